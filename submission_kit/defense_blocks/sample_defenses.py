"""The input transformations of the sample defense folders, by defense name: their one source of options.

The defense folders (``defenses/<name>/defense.py``), the BPDA attack folders aimed at them
(``attacks/bpda_<name>``, written by ``python -m research.adaptive.make_attacks``) and the adaptive evaluation
(``research.adaptive.evaluate``) all take a defense's transformation from here, so an attack aimed at a defense
always runs that defense's exact forward pass.

* ``tv_denoise`` -- D_ROF of S. Lee, S. Park, J. Lee, "Defensive denoising methods against adversarial attack",
  2018, Table 1: ``denoise_tv_bregman`` with the paper's weight of 10 (:func:`denoise.tv_denoise`).
* ``nl_means`` -- D_nlm of the same table: ``denoise_nl_means(patch_size=2, patch_distance=3, h=0.05,
  fast_mode=True)`` (:func:`denoise.nl_means`).
* ``jpeg`` -- JPEG at quality 75 with 4:2:0 chroma subsampling (Guo et al., ICLR 2018; :func:`denoise.jpeg`).
* ``<name>_vdef`` -- the same after the fixed defensive perturbation v_def of Lee et al., Eq. 1
  (``x ↦ clip(x + v_def, 0, 1)``, :func:`denoise.with_offset`); v_def is the folder's ``v_def.npy``.

Each transformation maps float images (N, 3, H, W) in [0, 1] to the same shape, dtype and device, in [0, 1].
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial

from submission_kit.defense_blocks import denoise, vdef
from submission_kit.defense_blocks.classify import Transform

__all__ = ["DENOISERS", "VDEF_SUFFIX", "transform"]

#: Defense name → its transformation (without v_def).
DENOISERS: dict[str, Transform] = {
    "tv_denoise": partial(denoise.tv_denoise, weight=10.0),
    "nl_means": partial(denoise.nl_means, patch_size=2, patch_distance=3, h=0.05, fast_mode=True),
    "jpeg": partial(denoise.jpeg, quality=75, subsampling="4:2:0"),
}

#: A defense named ``<denoiser><VDEF_SUFFIX>`` adds v_def before its denoiser.
VDEF_SUFFIX = "_vdef"


def transform(name: str, *, v_def: str | os.PathLike[str] | None = None,
              wrap: Callable[[Transform], Transform] | None = None) -> Transform:
    """The transformation of sample defense ``name``.

    Args:
        name: A key of :data:`DENOISERS`, or one followed by ``_vdef``.
        v_def: The stored v_def (``.npy``, float32 (3, H, W), [0, 1] scale); required exactly for ``_vdef`` names.
        wrap: Applied to the denoiser alone, inside the v_def offset (an attack passes
            ``submission_kit.attack_methods.adaptive.bpda``, so the offset's clip is differentiated exactly).

    Raises:
        ValueError: Unknown name, or ``v_def`` given for a plain name or missing for a ``_vdef`` one.
        submission_kit.defense_blocks.vdef.VDefNotFoundError: ``v_def`` does not exist.
    """
    base = name.removesuffix(VDEF_SUFFIX)
    if base not in DENOISERS:
        raise ValueError(f"unknown sample defense {name!r}; use one of "
                         f"{', '.join(sorted(DENOISERS))} (each also with {VDEF_SUFFIX})")
    wants_offset = name.endswith(VDEF_SUFFIX)
    if wants_offset != (v_def is not None):
        raise ValueError(f"{name}: pass v_def=<path of v_def.npy>" if wants_offset
                         else f"{name} takes no v_def (did you mean {name}{VDEF_SUFFIX}?)")
    denoiser = DENOISERS[base] if wrap is None else wrap(DENOISERS[base])
    return denoiser if v_def is None else denoise.with_offset(denoiser, vdef.load(v_def))
