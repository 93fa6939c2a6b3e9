"""``--sandbox none``: a plain process, with what every sandbox gives and nothing more.

The run gets a fresh copy of the submission folder, a private HOME and TMPDIR, a scrubbed environment, rlimits,
the cgroup limits where the harness may create cgroups (:mod:`harness.cgroups`), and its process group killed at
the limit and after exit; it can read what the harness can and use the network, so the competition runs it only
when asked for by name.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from harness.cgroups import cgroup_roots
from harness.library import library_link
from harness.process import run_process
from harness.records import RunRecord
from harness.sandboxes.base import Protections, RunRequest, Sandbox, SandboxKind
from harness.sandboxes.staging import fresh_copy, python_alias_needed, scrubbed_environment

__all__ = ["PlainSandbox"]


class PlainSandbox(Sandbox):
    """Plain processes (:attr:`SandboxKind.NONE`)."""

    kind = SandboxKind.NONE

    def probe(self) -> Protections:
        """The cgroup controllers this harness may use here, and a note that nothing else is isolated. Never
        raises."""
        cgroups, note = cgroup_roots()
        notes = ["--sandbox none: submissions run as plain processes without filesystem or network isolation"]
        if note:
            notes.append(note)
        return Protections(SandboxKind.NONE, namespaces=False, network=False, cgroup=cgroups, notes=tuple(notes))

    def run(self, request: RunRequest) -> RunRecord:
        """Run the entry point in its fresh copy, with HOME, TMPDIR and a folder holding only the submission
        library (on ``PYTHONPATH``) in :attr:`RunRequest.workdir`; ``{input}`` and ``{output}`` are the host
        folders."""
        workdir = request.workdir
        code = fresh_copy(request.submission, workdir / "submission")
        home, tmp = workdir / "home", workdir / "tmp"
        home.mkdir()
        tmp.mkdir()
        env = scrubbed_environment(home=str(home), tmp=str(tmp), gpu=request.gpu, threads=request.threads,
                                   library_parent=library_link(workdir / "library"))
        if python_alias_needed():
            alias = workdir / "python_alias"
            alias.mkdir()
            (alias / "python").symlink_to(Path(sys.executable).resolve())
            env["PATH"] = str(alias) + os.pathsep + env["PATH"]
        argv = [f"./{request.submission.entry_point}",
                *(a.replace("{input}", str(request.inputs)).replace("{output}", str(request.outputs))
                  for a in request.args)]
        return run_process(argv, cwd=code, env=env, limits=request.limits, log_path=request.log_path,
                           log_name=request.log_name, watch=request.outputs, cgroup=request.protections.cgroup,
                           instance=request.instance)
