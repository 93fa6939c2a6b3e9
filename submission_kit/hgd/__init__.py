"""High-level representation guided denoisers (HGD; Liao et al., CVPR 2018) at CIFAR-10 scale.

F. Liao, M. Liang, Y. Dong, T. Pang, X. Hu, J. Zhu, "Defense against adversarial attacks using high-level
representation guided denoiser", CVPR 2018 (code: lfz/Guided-Denoise). A denoiser D maps an adversarial image
x* to x̂ = D(x*), which the target model then classifies; D is trained on adversarial examples with a loss on
pixels (PGD), on the target model's last convolutional features (FGD), on its logits (LGD) or on its
classification loss (CGD).

Modules:

* :mod:`submission_kit.hgd.networks` -- DUNET (Fig. 3) and DAE.
* :mod:`submission_kit.hgd.losses` -- the four training losses.
* :mod:`research.hgd.data` -- the adversarial train/val/test sets (Table 1 at CIFAR scale);
  ``python -m research.hgd.make_data`` makes and caches them.
* :mod:`research.hgd.train` -- ``python -m research.hgd.train --arch dunet --guide lgd``.
* :mod:`submission_kit.hgd.registry` -- denoiser names, weights, :func:`load_denoiser`.
* :mod:`submission_kit.hgd.defense` -- denoise-then-classify for the ``defenses/hgd_*`` folders.
* :mod:`research.hgd.tables` -- ``python -m research.hgd.tables`` writes Tables 2-4 into docs/hgd.md.

Example::

    from submission_kit import zoo
    from submission_kit.hgd import load_denoiser
    denoiser = load_denoiser("dunet_lgd", device)          # eval mode, frozen
    logits = zoo.load(zoo.TARGET_MODEL, device)(denoiser(x).clamp(0, 1))   # x: float (N, 3, H, W) in [0, 1]

See docs/hgd.md.
"""

from submission_kit.hgd.networks import DAE, DUNET, Denoiser, build_denoiser
from submission_kit.hgd.registry import (
    DenoiserWeightsNotFoundError,
    UnknownDenoiserError,
    load_denoiser,
    names,
    parse_name,
    weights_path,
)

__all__ = [
    "DAE",
    "DUNET",
    "Denoiser",
    "DenoiserWeightsNotFoundError",
    "UnknownDenoiserError",
    "build_denoiser",
    "load_denoiser",
    "names",
    "parse_name",
    "weights_path",
]
