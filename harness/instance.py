"""Who made a thing on this machine: the identity of one harness instance.

A competition creates one :class:`Instance` (:meth:`Instance.create`) and passes it to everything that makes
something on the machine: scratch and staging folders and cgroups carry its :attr:`~Instance.tag` in their names,
containers in a label and their names. A test or a harness then looks only at its own things, and clean-up
removes only those of instances that are dead on this host (:meth:`Instance.alive`), never a live one's.

An instance is a process (host, pid, start time: a reused pid has another start time) plus a random token. The
token names the competition: a Dask worker serving it makes its things as :meth:`Instance.adopted` (the same
token, the worker process as owner), so they are left alone while the worker lives and swept once it is dead.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

from harness.errors import InstanceError

__all__ = ["Instance", "InstanceError", "process_start_time"]

_HOST_CHARS = re.compile(r"[^A-Za-z0-9.]")
_TOKEN = re.compile(r"[0-9a-f]{8}")
#: Longest host part of a tag (a file name may hold 255 bytes; a tag sits inside longer names).
_HOST_MAX = 40


def process_start_time(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot (``/proc/PID/stat`` field 22); None when no
    such process exists or ``/proc`` cannot be read."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:
        return int(stat_line.rsplit(")", 1)[1].split()[19])  # fields after "(comm)" start at field 3
    except (IndexError, ValueError):
        return None


def this_host() -> str:
    """This machine's name as tags spell it: letters, digits and dots (anything else becomes a dot), at most
    40 characters."""
    return _HOST_CHARS.sub(".", socket.gethostname())[:_HOST_MAX] or "localhost"


@dataclass(frozen=True)
class Instance:
    """The identity of one harness instance (see the module docstring).

    Attributes:
        host: :func:`this_host` of the machine the owning process runs on.
        pid: The owning process.
        start: Its start time (clock ticks since boot; 0 where ``/proc`` cannot be read).
        token: 8 random hex digits; the competition's, shared by the processes serving it.
    """

    host: str
    pid: int
    start: int
    token: str

    @classmethod
    def create(cls) -> Instance:
        """A new identity owned by the calling process, with a fresh token."""
        return cls(host=this_host(), pid=os.getpid(), start=process_start_time(os.getpid()) or 0,
                   token=secrets.token_hex(4))

    def adopted(self) -> Instance:
        """This competition's identity as the calling process makes things for it (a Dask worker): same token,
        the calling process as owner."""
        return Instance(host=this_host(), pid=os.getpid(), start=process_start_time(os.getpid()) or 0,
                        token=self.token)

    @property
    def tag(self) -> str:
        """``HOST-PID-START-TOKEN``: usable in file, cgroup and container names and as a label value."""
        return f"{self.host}-{self.pid}-{self.start}-{self.token}"

    @classmethod
    def parse(cls, tag: str) -> Instance:
        """The instance a :attr:`tag` spells.

        Raises:
            InstanceError: ``tag`` is not one.
        """
        parts = tag.rsplit("-", 3)
        if (len(parts) != 4 or not parts[0] or _HOST_CHARS.search(parts[0]) or len(parts[0]) > _HOST_MAX
                or not parts[1].isascii() or not parts[1].isdigit() or not parts[2].isascii()
                or not parts[2].isdigit() or not _TOKEN.fullmatch(parts[3])):
            raise InstanceError(f"{tag!r} is not a harness instance tag (HOST-PID-START-TOKEN)")
        return cls(host=parts[0], pid=int(parts[1]), start=int(parts[2]), token=parts[3])

    def local(self) -> bool:
        """True when the owning process runs (or ran) on this machine."""
        return self.host == this_host()

    def alive(self) -> bool:
        """True when the owning process still runs: on this host, a process with that pid and that start time.
        (Liveness on another host cannot be told here: see :meth:`dead`.)"""
        return self.local() and process_start_time(self.pid) == self.start

    def dead(self) -> bool:
        """True when the owner is known to be gone: it ran on this host, ``/proc`` answers for this process, and
        no process has its pid and start time. What is uncertain is never dead (clean-up leaves it alone)."""
        return self.local() and process_start_time(os.getpid()) is not None and not self.alive()
