"""``error:`` messages instead of tracebacks for the ``python -m submission_kit.prn.*`` commands.

A missing, mismatched or overlapping pool, a missing synthetic set, PRN or detector, an unknown model or a missing
dataset is a user error with a message that says what to run or change: the commands print it after ``error:`` and
exit with status 2 instead of a traceback. Anything else still raises.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

__all__ = ["run_command", "user_errors"]


def user_errors() -> tuple[type[BaseException], ...]:
    """The exception classes a PRN command reports as ``error: <message>`` (imported lazily: no cycles)."""
    from research.cifar10 import DatasetNotFoundError
    from submission_kit.prn.defense import PRNWeightsNotFoundError
    from submission_kit.zoo.registry import UnknownModelError, WeightsNotFoundError

    from .pool import PoolError, PoolNotFoundError, PoolOverlapError
    from .synthetic import SyntheticNotFoundError
    return (PoolError, PoolNotFoundError, PoolOverlapError, SyntheticNotFoundError, PRNWeightsNotFoundError,
            DatasetNotFoundError, UnknownModelError, WeightsNotFoundError)


def run_command(main: Callable[[], Any]) -> int:
    """Run a command's ``main()``; a user error becomes ``error: ...`` on stderr and exit status 2.

    Args:
        main: The command's entry point (parses ``sys.argv`` itself).

    Returns:
        The process exit status: 0 when ``main`` returned, 2 on a user error.
    """
    try:
        main()
    except user_errors() as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {message}", file=sys.stderr)
        return 2
    return 0
