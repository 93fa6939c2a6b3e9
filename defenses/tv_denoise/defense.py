"""ROF (total variation) denoising, then the zoo's target model.

S. Lee, S. Park, J. Lee, "Defensive denoising methods against adversarial attack", 2018 (D_ROF of Table 1):
``skimage.restoration.denoise_tv_bregman(x, weight=10, channel_axis=-1)`` on images in [0, 1], each colour
channel separately (split Bregman, max_num_iter=100, eps=1e-3, isotropic). ``weight`` is scikit-image's fidelity
weight (smaller = smoother), the paper's "weight of 10"; see ``submission_kit.defense_blocks.filters.rof``.
Options: ``submission_kit.defense_blocks.sample_defenses`` (shared with the BPDA attack aimed at it).
"""

from submission_kit.defense_blocks import classify, sample_defenses


def main(argv=None):
    classify.run_defense(transform=sample_defenses.transform("tv_denoise"), argv=argv)


if __name__ == "__main__":
    main()
