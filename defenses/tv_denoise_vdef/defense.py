"""Defensive perturbation v_def, then ROF (total variation) denoising, then the zoo's target model.

S. Lee, S. Park, J. Lee, "Defensive denoising methods against adversarial attack", 2018: D_ROF(x + v_def) of
Table 1. v_def (Eq. 1, ``v_def.npy`` in this folder, made by ``python -m research.lee2018.make_vdef``; see
``v_def.json``) is added and the sum clipped to [0, 1]; then ``skimage.restoration.denoise_tv_bregman(weight=10,
channel_axis=-1)`` on [0, 1] images, each colour channel separately (weight: smaller = smoother).
Options: ``submission_kit.defense_blocks.sample_defenses`` (shared with the BPDA attack aimed at it).
"""

from pathlib import Path

from submission_kit.defense_blocks import classify, sample_defenses

V_DEF = Path(__file__).resolve().with_name("v_def.npy")


def main(argv=None):
    classify.run_defense(transform=sample_defenses.transform("tv_denoise_vdef", v_def=V_DEF), argv=argv)


if __name__ == "__main__":
    main()
