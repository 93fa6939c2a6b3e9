"""An adversarial-robustness competition harness in the NIPS 2017 / CAAD 2018 format: the referee.

Modules, in the order data flows through them: :mod:`submission_kit.contract` (uint8 PNG / integer ε, shared with
the submission library), :mod:`harness.dataset`, :mod:`harness.tracks` (the track enum), :mod:`harness.submission`,
:mod:`harness.library` (the submission library as runs see it; environment fingerprint), :mod:`harness.sandboxes`
(one module per sandbox kind behind one interface), :mod:`harness.process` (one process under limits → run record),
:mod:`harness.limits`, :mod:`harness.devices`, :mod:`harness.instance` (who made a thing on the machine),
:mod:`harness.workspace`, :mod:`harness.planning` (units, keys, packing, opaque names), :mod:`harness.store` (the
store interface), :mod:`harness.record_store` (what the store keeps, typed), :mod:`harness.records` (typed unit
records), :mod:`harness.execution` (runs units, feeds the referee), :mod:`harness.defense_output`,
:mod:`harness.tabulation`, :mod:`harness.table`, :mod:`harness.scoring`, :mod:`harness.report` (views),
:mod:`harness.results_folder` (every path of the results folder), :mod:`harness.manifest` (``manifest.json``,
typed), :mod:`harness.competition`, :mod:`harness.validate`, :mod:`harness.cli`; :mod:`harness.errors` holds every
error they raise on purpose.
Submissions use :mod:`submission_kit`; it never imports torch itself.
"""

__version__ = "0.1.0"
