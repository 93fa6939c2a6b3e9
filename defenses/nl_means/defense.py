"""Non-local means denoising, then the zoo's target model.

S. Lee, S. Park, J. Lee, "Defensive denoising methods against adversarial attack", 2018 (D_nlm of Table 1):
``skimage.restoration.denoise_nl_means(x, patch_size=2, patch_distance=3, h=0.05, fast_mode=True,
channel_axis=-1)`` on images in [0, 1], colour patches. scikit-image rounds the even patch size up (a 3×3 patch).
Options: ``submission_kit.defense_blocks.sample_defenses`` (shared with the BPDA attack aimed at it).
"""

from submission_kit.defense_blocks import classify, sample_defenses


def main(argv=None):
    classify.run_defense(transform=sample_defenses.transform("nl_means"), argv=argv)


if __name__ == "__main__":
    main()
