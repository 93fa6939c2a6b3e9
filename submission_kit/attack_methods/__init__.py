"""Reference attacks as pure PyTorch functions, shared by the sample submissions in ``attacks/``.

Modules, one per family:

* :mod:`submission_kit.attack_methods.gradient` -- L∞ gradient-sign attacks: FGSM, I-FGSM (BIM), MI-FGSM, PGD, step-LL,
  iter-LL, step-target, iter-target.
* :mod:`submission_kit.attack_methods.universal` -- DeepFool and universal adversarial perturbations (UAP), the L∞/L2
  projections and the fooling rate.
* :mod:`submission_kit.attack_methods.ensemble` -- a logit ensemble of several models (the black-box transfer attacker).
* :mod:`submission_kit.attack_methods.submission` -- the one wrapper every sample attack folder uses: parse the NIPS
2017
  arguments, load zoo models, attack each batch, write uint8 PNGs inside the ε-ball.
* :mod:`research.uap.make_uap` -- the command that computes a folder's stored universal perturbation.

Shared conventions: images are float tensors in [0, 1] of shape (N, C, H, W); budgets (``eps``, ``alpha``,
``xi``) are on the same [0, 1] scale (an integer budget ε in 0-255 units is ``ε / 255``); inputs are never
modified; the model is put in eval mode for the call and restored afterwards; attacks never need labels (they
use the model's own prediction on the clean input); randomness only comes from an explicit
``torch.Generator``.
"""

from submission_kit.attack_methods.common import eval_mode, least_likely, predict
from submission_kit.attack_methods.ensemble import LogitEnsemble
from submission_kit.attack_methods.gradient import (
    fgsm,
    i_fgsm,
    iter_ll,
    iter_target,
    kurakin_steps,
    mi_fgsm,
    pgd,
    step_ll,
    step_target,
)
from submission_kit.attack_methods.universal import (
    DeepFoolResult,
    UAPResult,
    apply_universal,
    deepfool,
    fooling_rate,
    project_l2,
    project_linf,
    universal_perturbation,
)

__all__ = [
    "DeepFoolResult",
    "LogitEnsemble",
    "UAPResult",
    "apply_universal",
    "deepfool",
    "eval_mode",
    "fgsm",
    "fooling_rate",
    "i_fgsm",
    "iter_ll",
    "iter_target",
    "kurakin_steps",
    "least_likely",
    "mi_fgsm",
    "pgd",
    "predict",
    "project_l2",
    "project_linf",
    "step_ll",
    "step_target",
    "universal_perturbation",
]
