"""An adversarial-robustness competition harness in the NIPS 2017 / CAAD 2018 format.

Modules, in the order data flows through them: :mod:`submission_kit.contract` (uint8 PNG / integer ε),
:mod:`harness.dataset`, :mod:`harness.submission`, :mod:`harness.sandbox`, :mod:`harness.store`,
:mod:`harness.runner`, :mod:`harness.table`, :mod:`harness.scoring`, :mod:`harness.report`,
:mod:`harness.competition`, :mod:`harness.cli`; submissions use :mod:`submission_kit.sdk` and :mod:`submission_kit.zoo`.
"""

__version__ = "0.1.0"
