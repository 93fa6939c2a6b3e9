"""Non-local means denoising, then the zoo's target model.

S. Lee, S. Park, J. Lee, "Defensive denoising methods against adversarial attack", 2018 (D_nlm of Table 1):
``skimage.restoration.denoise_nl_means(x, patch_size=2, patch_distance=3, h=0.05, fast_mode=True,
channel_axis=-1)`` on images in [0, 1], colour patches. scikit-image rounds the even patch size up (a 3×3 patch).
"""

from functools import partial

from submission_kit.defense_blocks import classify, denoise


def main(argv=None):
    transform = partial(denoise.nl_means, patch_size=2, patch_distance=3, h=0.05, fast_mode=True)
    classify.run_defense(transform=transform, argv=argv)


if __name__ == "__main__":
    main()
