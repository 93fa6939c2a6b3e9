"""One-line messages: text a participant controls, made safe for a terminal line and a log; and the one
"did you mean" look-up of a mistyped name (:func:`close_names`).

Lives in the submission library because both sides use it: the contract (shared by the referee and the SDK)
quotes decoder errors with it, and the referee (:mod:`harness.names`) re-exports it for every message it prints.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

__all__ = ["SUGGESTION_CUTOFF", "close_names", "one_line"]

#: Control characters (C0, DEL, C1), line/paragraph separators, zero-width and bidirectional-override characters.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def one_line(text: str, *, limit: int = 500) -> str:
    """``text`` made safe for one terminal line: control and invisible characters escaped, cut to ``limit``
    characters (an ellipsis marks the cut)."""
    text = _UNSAFE.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), str(text))
    return text if len(text) <= limit else text[:limit] + "…"


#: How alike a name must be to a mistyped one to be suggested for it (:func:`difflib.get_close_matches` ratio, 0..1).
SUGGESTION_CUTOFF = 0.6


def close_names(name: str, choices: Iterable[str], *, n: int = 1) -> list[str]:
    """Up to ``n`` of ``choices`` that resemble ``name`` (similarity at least :data:`SUGGESTION_CUTOFF`), the
    closest first; empty when none does. Every "did you mean" of the referee and of the library comes from here."""
    return difflib.get_close_matches(name, list(choices), n=n, cutoff=SUGGESTION_CUTOFF)
