"""Feature-denoising networks with adversarial training, at CIFAR-10 scale on a CPU.

C. Xie, Y. Wu, L. van der Maaten, A. Yuille, K. He, "Feature Denoising for Improving Adversarial Robustness",
CVPR 2019 (the CAAD 2018 winner). Modules:

* :mod:`.blocks` -- denoising operations (non-local Gaussian / dot product, bilateral, mean, median, null) and the
  denoising block ``x + BN_{γ=0}(Conv1x1(op(x)))`` with the seed's Table 1 ablation switches;
* :mod:`.networks` -- the zoo's ResNet-8 with blocks after stages 2 and 3 (a :class:`submission_kit.zoo.ZooModel`);
* :mod:`.variants` -- the registry of variants (baseline, operations, ablations), their weights and recipe;
* :mod:`.adversarial`, :mod:`.train` -- adversarial training (``python -m research.feature_denoising.train``);
* :mod:`.cost` -- measured training cost per epoch of every variant and attack;
* :mod:`.evaluation`, :mod:`.whitebox` -- PGD accuracy and the white-box curves (seed Fig. 6-7, Table 1);
* :mod:`.defense`, :mod:`.make_defense` -- the defense folders (``defenses/fd_nonlocal``, ``adv_baseline``);
* :mod:`.blackbox` -- the all-or-nothing black-box table through the harness (seed Table 2).

Example::

    from submission_kit.feature_denoising import variants
    model = variants.load("nonlocal_gaussian")   # eval mode; x: float (N, 3, 32, 32) in [0, 1]
    logits = model(x)                             # (N, 10)

Design, costs and commands: ``docs/feature_denoising.md``.
"""

from . import variants
from .blocks import OPS, DenoisingBlock, DenoisingOp
from .networks import DenoisingResNet

__all__ = ["OPS", "DenoisingBlock", "DenoisingOp", "DenoisingResNet", "variants"]
