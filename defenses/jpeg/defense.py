"""JPEG compression (quality 75, in memory with Pillow), then the zoo's target model.

The classic input-transformation baseline: G. K. Dziugaite, Z. Ghahramani, D. M. Roy, "A study of the effect of
JPG compression on adversarial images", 2016; N. Das et al., "Keeping the bad guys out: protecting and
vaccinating deep learning with JPEG compression", 2017; C. Guo, M. Rana, M. Cissé, L. van der Maaten,
"Countering adversarial images using input transformations", ICLR 2018 (quality 75). Pillow ``quality=75``,
``subsampling="4:2:0"``; see ``submission_kit.defense_blocks.filters.jpeg``.
Options: ``submission_kit.defense_blocks.sample_defenses`` (shared with the BPDA attack aimed at it).
"""

from submission_kit.defense_blocks import classify, sample_defenses


def main(argv=None):
    classify.run_defense(transform=sample_defenses.transform("jpeg"), argv=argv)


if __name__ == "__main__":
    main()
