"""Defensive perturbation v_def, then non-local means denoising, then the zoo's target model.

S. Lee, S. Park, J. Lee, "Defensive denoising methods against adversarial attack", 2018: D_nlm(x + v_def) of
Table 1. v_def (Eq. 1, ``v_def.npy`` in this folder, made by ``python -m research.lee2018.make_vdef``; see
``v_def.json``) is added and the sum clipped to [0, 1]; then ``skimage.restoration.denoise_nl_means(
patch_size=2, patch_distance=3, h=0.05, fast_mode=True, channel_axis=-1)`` (the even patch size becomes 3×3).
"""

from functools import partial
from pathlib import Path

from submission_kit.defense_blocks import classify, denoise, vdef

V_DEF = Path(__file__).resolve().with_name("v_def.npy")


def main(argv=None):
    nl_means = partial(denoise.nl_means, patch_size=2, patch_distance=3, h=0.05, fast_mode=True)
    classify.run_defense(transform=denoise.with_offset(nl_means, vdef.load(V_DEF)), argv=argv)


if __name__ == "__main__":
    main()
