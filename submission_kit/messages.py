"""One-line messages: text a participant controls, made safe for a terminal line and a log.

Lives in the submission library because both sides use it: the contract (shared by the referee and the SDK)
quotes decoder errors with it, and the referee (:mod:`harness.names`) re-exports it for every message it prints.
"""

from __future__ import annotations

import re

__all__ = ["one_line"]

#: Control characters (C0, DEL, C1), line/paragraph separators, zero-width and bidirectional-override characters.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def one_line(text: str, *, limit: int = 500) -> str:
    """``text`` made safe for one terminal line: control and invisible characters escaped, cut to ``limit``
    characters (an ellipsis marks the cut)."""
    text = _UNSAFE.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), str(text))
    return text if len(text) <= limit else text[:limit] + "…"
