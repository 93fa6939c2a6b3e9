"""Choosing a sandbox: the implementation of each :class:`~harness.sandboxes.base.SandboxKind`, picked once."""

from __future__ import annotations

import functools

from harness.sandboxes.base import Protections, Sandbox, SandboxKind
from harness.sandboxes.bwrap import BwrapSandbox
from harness.sandboxes.docker import ContainerSandbox
from harness.sandboxes.plain import PlainSandbox
from harness.submission import suggest

__all__ = ["probe", "sandbox_for"]


def sandbox_for(kind: SandboxKind | str) -> Sandbox:
    """The sandbox of ``kind``: AUTO and BWRAP → bubblewrap, NONE → plain processes, DOCKER and GVISOR → containers
    (runc and runsc).

    Args:
        kind: A :class:`SandboxKind` or its value (``"bwrap"``, as ``--sandbox`` takes it).

    Raises:
        ValueError: ``kind`` names no sandbox (one line listing the kinds, with the closest one).
    """
    if not isinstance(kind, SandboxKind):
        names = [k.value for k in SandboxKind]
        if kind not in names:
            raise ValueError(f"unknown sandbox {kind!r}{suggest(str(kind), names)} (one of {', '.join(names)})")
        kind = SandboxKind(kind)
    if kind in (SandboxKind.AUTO, SandboxKind.BWRAP):
        return BwrapSandbox(kind)
    if kind is SandboxKind.NONE:
        return PlainSandbox()
    return ContainerSandbox(kind)


@functools.lru_cache(maxsize=None)
def probe(kind: SandboxKind = SandboxKind.AUTO) -> Protections:
    """Find out which protections the sandbox of ``kind`` gives on this machine (cached per process).

    Raises:
        RuntimeError: ``kind`` is AUTO, BWRAP, DOCKER or GVISOR and no such sandbox can run here (the message says
            what it would take); only an explicit NONE runs submissions as plain processes.
    """
    return sandbox_for(kind).probe()
