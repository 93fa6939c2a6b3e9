"""ROF (total variation) denoising, then the zoo's target model.

S. Lee, S. Park, J. Lee, "Defensive denoising methods against adversarial attack", 2018 (D_ROF of Table 1):
``skimage.restoration.denoise_tv_bregman(x, weight=10, channel_axis=-1)`` on images in [0, 1], each colour
channel separately (split Bregman, max_num_iter=100, eps=1e-3, isotropic). ``weight`` is scikit-image's fidelity
weight (smaller = smoother), the paper's "weight of 10"; see ``submission_kit.defense_blocks.filters.rof``.
"""

from functools import partial

from submission_kit.defense_blocks import classify, denoise


def main(argv=None):
    classify.run_defense(transform=partial(denoise.tv_denoise, weight=10.0), argv=argv)


if __name__ == "__main__":
    main()
