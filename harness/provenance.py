"""What a unit's run was made under, and whether a stored record may stand in for a run asked now: data types
only, no I/O.

A unit's key holds what the run computes on (the submission's content, its inputs, ε, the environment, the referee
version); :class:`Provenance` holds how it ran: the sandbox kind, the limits actually applied (and which of them a
cgroup or a container enforced), the device class, the container image's digest, the referee's modes. A stored
record is reused only when :meth:`Provenance.weaker_than` finds it made under conditions at least as strict as
those asked now; otherwise the unit reruns, with the one-line reason it returns.

Rules (record ``made``, conditions ``asked``):

- sandbox kinds: ``none`` is below every other kind, ``docker`` below ``gvisor``; ``bwrap`` and the container kinds
  are not comparable (a record of one reruns under the other);
- each numeric limit: the recorded one at most the asked one (None = unlimited, the loosest); for ``memory_mb`` and
  ``max_processes``, a limit enforced by a cgroup or container is stricter than the same limit unenforced;
- the device class ("cpu" or the GPU's model), the image digest and the referee modes must be equal;
- the CPU share (and the cap it puts on the CPU-time limit, ``cpu_seconds`` ≤ wall × the share's CPUs) is not part
  of strictness for a run that succeeded: it only changes how fast a run goes, and the run's wall-clock limit held.
  The CPU-time limit is compared as it would be without a share (:attr:`AppliedLimits.cpu_seconds_alone`);
- a run that failed (its record has a problem) under conditions stricter than those asked in any respect, its CPU
  share included, reruns (it may pass now); one that failed under the asked conditions, or under a looser share, is
  reused (it would fail again).

Referee modes: the referee (:func:`submission_kit.contract.referee`) has no switch that changes a verdict (a change
of verdicts bumps :data:`harness.planning.REFEREE_VERSION`, which is part of every attack unit's key), so
:data:`REFEREE_MODES` is empty; the field exists so that a mode added later is recorded and compared.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Iterable

from harness.cgroups import CGROUP_LIMITS
from harness.limits import LimitPolicy
from harness.parallelism import CpuShare

__all__ = ["ENFORCEABLE", "REFEREE_MODES", "SANDBOX_KINDS", "AppliedLimits", "ManifestConditions", "Provenance",
           "applied_limits"]

#: Kinds a run can be made under (:class:`harness.sandboxes.base.SandboxKind` values; ``auto`` runs as ``bwrap``).
SANDBOX_KINDS = ("none", "bwrap", "docker", "gvisor")
#: Limits that hold for a whole run only where a cgroup or a container enforces them.
ENFORCEABLE = tuple(CGROUP_LIMITS)
#: Referee modes that change verdicts: none exist (see the module's docstring).
REFEREE_MODES: tuple[str, ...] = ()

#: (made, asked) pairs of sandbox kinds where ``made`` is stricter than ``asked``.
_STRICTER = {("bwrap", "none"), ("docker", "none"), ("gvisor", "none"), ("gvisor", "docker")}


@dataclass(frozen=True)
class AppliedLimits:
    """The limits one run was held to (None = unlimited).

    Attributes:
        wall_seconds: Wall-clock limit.
        cpu_seconds: CPU-time limit applied (RLIMIT_CPU; capped at wall × the CPU share's CPUs).
        cpu_seconds_alone: The CPU-time limit the run would have had without a CPU share (the policy's).
        memory_mb: Memory limit.
        max_processes: Processes and threads at once.
        output_mb: Output folder size.
        output_files: Entries in the output folder.
        log_mb: Log size.
        cpu_share: CPUs of the run's CPU share; None when it ran alone.
        enforced: Those of :data:`ENFORCEABLE` that a cgroup or a container enforced, sorted.
    """

    wall_seconds: float
    cpu_seconds: float | None = None
    cpu_seconds_alone: float | None = None
    memory_mb: int | None = None
    max_processes: int | None = None
    output_mb: int | None = None
    output_files: int | None = None
    log_mb: int | None = None
    cpu_share: float | None = None
    enforced: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"wall_seconds": self.wall_seconds, "cpu_seconds": self.cpu_seconds,
                "cpu_seconds_alone": self.cpu_seconds_alone, "memory_mb": self.memory_mb,
                "max_processes": self.max_processes, "output_mb": self.output_mb, "output_files": self.output_files,
                "log_mb": self.log_mb, "cpu_share": self.cpu_share, "enforced": list(self.enforced)}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> AppliedLimits:
        """Inverse of :meth:`to_json` (raises ``KeyError``/``TypeError``/``ValueError`` on bad input)."""
        def number(name: str) -> float | None:
            found = value.get(name)
            return None if found is None else float(found)

        def whole(name: str) -> int | None:
            found = value.get(name)
            return None if found is None else int(found)

        return cls(wall_seconds=float(value["wall_seconds"]), cpu_seconds=number("cpu_seconds"),
                   cpu_seconds_alone=number("cpu_seconds_alone"), memory_mb=whole("memory_mb"),
                   max_processes=whole("max_processes"), output_mb=whole("output_mb"),
                   output_files=whole("output_files"), log_mb=whole("log_mb"), cpu_share=number("cpu_share"),
                   enforced=tuple(sorted(str(name) for name in value.get("enforced", ()))))


def applied_limits(policy: LimitPolicy, images: int, *, share: CpuShare | None,
                   unenforced: Iterable[str]) -> AppliedLimits:
    """The limits a run over ``images`` images gets from ``policy`` holding ``share`` (None: it runs alone).

    Args:
        policy: The per-run limit policy.
        images: Images of the run (≥ 1).
        share: Its CPU share.
        unenforced: Limit names the sandbox cannot enforce for a whole run
            (:meth:`harness.sandboxes.base.Protections.unenforced`).
    """
    limits = policy.limits(images, cpu_share=share)
    skipped = set(unenforced)
    enforced = tuple(sorted(name for name in ENFORCEABLE if getattr(limits, name) and name not in skipped))
    return AppliedLimits(wall_seconds=limits.wall_seconds, cpu_seconds=limits.cpu_seconds,
                         cpu_seconds_alone=policy.limits(images).cpu_seconds, memory_mb=limits.memory_mb,
                         max_processes=limits.max_processes, output_mb=limits.output_mb,
                         output_files=limits.output_files, log_mb=limits.log_mb,
                         cpu_share=None if share is None else share.cpus, enforced=enforced)


def _order(made: float | None, asked: float | None) -> int:
    """-1 when ``made`` is the stricter limit, 0 when equal, 1 when looser (None = unlimited)."""
    if made == asked:
        return 0
    if made is None:
        return 1
    if asked is None:
        return -1
    return -1 if made < asked else 1


def _shown(value: float | None, unit: str) -> str:
    return "no limit" if value is None else f"{value:g}{unit}"


@dataclass(frozen=True)
class Provenance:
    """What one run was made under.

    Attributes:
        sandbox: One of :data:`SANDBOX_KINDS`.
        limits: The limits applied.
        device: "cpu", or the model of the GPU the run was given (``nvidia-smi``).
        image: The container image's id (``docker image inspect`` ``.Id``, "sha256:…") when one ran, else "".
        modes: Referee modes in force (:data:`REFEREE_MODES`), sorted.
    """

    sandbox: str
    limits: AppliedLimits
    device: str = "cpu"
    image: str = ""
    modes: tuple[str, ...] = REFEREE_MODES

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"sandbox": self.sandbox, "limits": self.limits.to_json(), "device": self.device,
                "image": self.image, "modes": list(self.modes)}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Provenance:
        """Inverse of :meth:`to_json` (raises ``KeyError``/``TypeError``/``ValueError`` on bad input)."""
        sandbox = str(value["sandbox"])
        if sandbox not in SANDBOX_KINDS:
            raise ValueError(f"unknown sandbox kind {sandbox!r}")
        return cls(sandbox=sandbox, limits=AppliedLimits.from_json(value["limits"]), device=str(value["device"]),
                   image=str(value.get("image", "")), modes=tuple(sorted(str(m) for m in value.get("modes", ()))))

    def placed_as(self, other: Provenance) -> Provenance:
        """This provenance with ``other``'s device class and CPU share (and whether the share was enforced): what
        is asked where this process cannot know which device and share a run would get (a cluster's workers decide
        them), so that only the other conditions are compared."""
        enforced = {name for name in self.limits.enforced if name != "cpu_share"}
        if "cpu_share" in other.limits.enforced:
            enforced.add("cpu_share")
        return replace(self, device=other.device, limits=replace(self.limits, cpu_share=other.limits.cpu_share,
                                                                 enforced=tuple(sorted(enforced))))

    def weaker_than(self, asked: Provenance, *, failed: bool = False) -> str:
        """Why a record made under this provenance may not stand in for a run asked under ``asked``; "" when it
        may (the rules are in the module's docstring).

        Args:
            asked: The conditions a run of the unit would be made under now.
            failed: The record's run failed (its problem is not ""): it must not have been made under stricter
                conditions than asked either.

        Returns:
            "" or a one-line reason, e.g. "made without a sandbox", "made with a 120 s limit, 60 s asked",
            "failed with a 60 s limit, 120 s asked (it may pass now)".
        """
        for order, text in self._comparisons(asked, failed=failed):
            if order is None or order > 0:
                return f"made {text}"
            if failed and order < 0:
                return f"failed {text} (it may pass now)"
        return ""

    def _comparisons(self, asked: Provenance, *, failed: bool) -> list[tuple[int | None, str]]:
        """(order, words) per respect, in the order reasons are given: -1 = this record's condition is stricter,
        0 = equal, 1 = looser, None = not comparable (both rerun)."""
        made, want = self.limits, asked.limits
        result: list[tuple[int | None, str]] = [(self._sandbox_order(asked.sandbox), self._sandbox_words(asked)),
                                                (0 if self.device == asked.device else None,
                                                 f"on {self.device}, now on {asked.device}"),
                                                (0 if self.image == asked.image else None,
                                                 f"with image {self.image or '(digest not recorded)'}, now "
                                                 f"{asked.image or '(no image)'}"),
                                                (0 if self.modes == asked.modes else None,
                                                 f"with referee modes ({', '.join(self.modes)}), now "
                                                 f"({', '.join(asked.modes)})"),
                                                (_order(made.wall_seconds, want.wall_seconds),
                                                 f"with a {made.wall_seconds:g} s limit, {want.wall_seconds:g} s "
                                                 "asked"),
                                                (_order(made.cpu_seconds_alone, want.cpu_seconds_alone),
                                                 f"with a CPU-time limit of {_shown(made.cpu_seconds_alone, ' s')}, "
                                                 f"{_shown(want.cpu_seconds_alone, ' s')} asked")]
        for name in ("memory_mb", "max_processes", "output_mb", "output_files", "log_mb"):
            mine, theirs = getattr(made, name), getattr(want, name)
            result.append((_order(mine, theirs), f"with {name} {_shown(mine, '')}, {_shown(theirs, '')} asked"))
            if name in ENFORCEABLE and mine is not None and theirs is not None:
                held, wanted = name in made.enforced, name in want.enforced
                result.append((0 if held == wanted else (-1 if held else 1),
                               f"with {name} {'enforced' if held else 'unenforced'}, "
                               f"{'enforced' if wanted else 'unenforced'} asked"))
        if failed:  # the share only matters to a run that may have failed for want of CPU
            result.append((min(0, _order(made.cpu_share, want.cpu_share)),
                           f"with a CPU share of {_shown(made.cpu_share, ' CPUs')}, "
                           f"{_shown(want.cpu_share, ' CPUs')} asked"))
        return result

    def _sandbox_order(self, asked: str) -> int | None:
        if self.sandbox == asked:
            return 0
        if (self.sandbox, asked) in _STRICTER:
            return -1
        if (asked, self.sandbox) in _STRICTER:
            return 1
        return None

    def _sandbox_words(self, asked: Provenance) -> str:
        if self.sandbox == "none":
            return "without a sandbox"
        return f"under {self.sandbox}, {'no sandbox' if asked.sandbox == 'none' else asked.sandbox} asked"


@dataclass(frozen=True)
class ManifestConditions:
    """The conditions a results folder's ``manifest.json`` says its last competition ran under: the provenance of
    records made before records stated their own.

    Attributes:
        sandbox: The sandbox kind (``protections.sandbox``).
        policy: The limit policy (``limits``).
        share: The CPU share of each run (first of ``cpu_shares``); None when runs ran without one.
        unenforced: Limits of :data:`ENFORCEABLE` not enforced (``unenforced_limits``, or for a manifest without
            it, those whose cgroup controller is missing from ``protections.cgroup_controllers``).
        device: "cpu" when the manifest lists no GPU, else "GPU (model not recorded)".
    """

    sandbox: str
    policy: LimitPolicy
    share: CpuShare | None
    unenforced: tuple[str, ...]
    device: str

    @classmethod
    def from_manifest(cls, manifest: object) -> ManifestConditions | None:
        """The conditions of a parsed ``manifest.json``; None when it does not say them (then a record without a
        provenance reruns)."""
        if not isinstance(manifest, dict):
            return None
        try:
            protections = manifest["protections"]
            sandbox = "bwrap" if protections["sandbox"] == "auto" else str(protections["sandbox"])
            if sandbox not in SANDBOX_KINDS:
                return None
            policy = LimitPolicy(**manifest["limits"])
            shares = manifest.get("cpu_shares") or []
            share = CpuShare(cpus=float(shares[0]["cpus"]), cores=tuple(shares[0]["cores"])) if shares else None
            if isinstance(manifest.get("unenforced_limits"), list):
                unenforced = tuple(str(name) for name in manifest["unenforced_limits"])
            elif sandbox in ("docker", "gvisor"):
                unenforced = ()
            else:
                controllers = set(protections.get("cgroup_controllers", ()))
                unenforced = tuple(name for name, controller in CGROUP_LIMITS.items() if controller not in controllers)
            device = "GPU (model not recorded)" if manifest.get("gpus") else "cpu"
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            return None
        return cls(sandbox=sandbox, policy=policy, share=share, unenforced=unenforced, device=device)

    def provenance(self, images: int) -> Provenance:
        """The provenance of a run over ``images`` images under these conditions (no image digest: none was
        recorded)."""
        return Provenance(sandbox=self.sandbox, device=self.device,
                          limits=applied_limits(self.policy, images, share=self.share, unenforced=self.unenforced))
