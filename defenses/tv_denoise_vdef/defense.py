"""Defensive perturbation v_def, then ROF (total variation) denoising, then the zoo's target model.

S. Lee, S. Park, J. Lee, "Defensive denoising methods against adversarial attack", 2018: D_ROF(x + v_def) of
Table 1. v_def (Eq. 1, ``v_def.npy`` in this folder, made by ``python -m research.lee2018.make_vdef``; see
``v_def.json``) is added and the sum clipped to [0, 1]; then ``skimage.restoration.denoise_tv_bregman(weight=10,
channel_axis=-1)`` on [0, 1] images, each colour channel separately (weight: smaller = smoother).
"""

from functools import partial
from pathlib import Path

from submission_kit.defense_blocks import classify, denoise, vdef

V_DEF = Path(__file__).resolve().with_name("v_def.npy")


def main(argv=None):
    transform = denoise.with_offset(partial(denoise.tv_denoise, weight=10.0), vdef.load(V_DEF))
    classify.run_defense(transform=transform, argv=argv)


if __name__ == "__main__":
    main()
