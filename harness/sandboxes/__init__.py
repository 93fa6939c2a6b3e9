"""The sandboxes a submission process runs in, one module per kind behind one interface.

:mod:`harness.sandboxes.base` holds the interface (:class:`~harness.sandboxes.base.Sandbox`: ``probe()`` says what
this machine enforces, ``run(request)`` runs one submission and returns its
:class:`~harness.records.RunRecord`), the kinds and the request; :mod:`~harness.sandboxes.plain` (``--sandbox
none``), :mod:`~harness.sandboxes.bwrap` (bubblewrap) and :mod:`~harness.sandboxes.docker` (docker with runc or
gVisor's runsc) implement it; :func:`harness.sandboxes.factory.sandbox_for` picks the implementation of a kind,
once. Each sandbox stages the run with :mod:`~harness.sandboxes.staging` (fresh copy, scrubbed environment) and
starts it with :func:`harness.process.run_process` (limits, log, kill), which knows nothing of sandboxes.
"""
