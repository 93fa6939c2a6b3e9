"""The command-line options the research commands share, defined once in a parent parser each command extends.

Every research command (``python -m research.<topic>.<module>``) builds its parser as::

    parser = argparse.ArgumentParser(prog=..., parents=[cli.parent(seed=cli.Option(default=0), ...)])
    parser.add_argument(...)  # the command's own options

The parent holds the four options that recur across commands, each with one name, one type and one meaning:

``--seed N`` (int)
    Seeds every random draw of the run (subset choice, initialisation, data order, attack starts); the same seed
    gives the same result on the same software and hardware.
``--out PATH`` (:class:`pathlib.Path`)
    Where the run's result goes (a file or a folder, as the command says); its JSON record, when it writes one,
    goes next to it.
``--threads N`` (int)
    torch CPU threads (``torch.set_num_threads``); the count actually used is written into the provenance record.
``--images N`` (int)
    How many images the run uses (a seeded subset of the split when fewer than the split holds).

A command passes an :class:`Option` for each shared option it takes, giving its default (kept per command: the
values its recorded results were made with) and, where the generic help is not precise enough, its own help.
Options a command does not take are left out of its parser, so no flag is ever accepted and then ignored.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["HELP", "Option", "parent"]

#: Help of each shared option when the command gives none.
HELP = {
    "seed": "random seed of the run's draws",
    "out": "where the result goes",
    "threads": "torch CPU threads",
    "images": "how many images (seeded subset)",
}

_TYPES: dict[str, type] = {"seed": int, "out": Path, "threads": int, "images": int}


@dataclass(frozen=True, kw_only=True)
class Option:
    """How one command takes one shared option.

    Attributes:
        default: Value when the flag is not given (None: the command's own fallback, e.g. a registered recipe's
            seed or a default path; documented in ``help``).
        help: Help line (None: :data:`HELP`'s generic line). argparse's ``%(default)s`` works in it.
        required: The flag must be given (then ``default`` is unused).
        repeat: The flag may be given several times; the value is the list of the given values in order (only
            ``--out``: one result written to several places).
    """

    default: Any = None
    help: str | None = None
    required: bool = False
    repeat: bool = False


def parent(*, seed: Option | None = None, out: Option | None = None, threads: Option | None = None,
           images: Option | None = None) -> argparse.ArgumentParser:
    """A fresh parent parser (``add_help=False``) holding the shared options a command takes.

    Args:
        seed, out, threads, images: How the command takes ``--seed``, ``--out``, ``--threads`` and ``--images``;
            None leaves the option out.

    Returns:
        A new parser for ``argparse.ArgumentParser(parents=[...])``. It is new on every call because a child
        parser shares its parent's option objects, so one parent must not serve two commands.

    Raises:
        ValueError: ``repeat`` asked for an option other than ``--out``.
    """
    parser = argparse.ArgumentParser(add_help=False)
    for name, option in (("seed", seed), ("out", out), ("threads", threads), ("images", images)):
        if option is None:
            continue
        if option.repeat and name != "out":
            raise ValueError(f"only --out may be repeated, not --{name}")
        settings: dict[str, Any] = {"type": _TYPES[name], "help": option.help or HELP[name]}
        if option.repeat:
            settings["action"] = "append"
        if option.required:
            settings["required"] = True
        else:
            settings["default"] = option.default
        parser.add_argument(f"--{name}", **settings)
    return parser
