"""Feature-denoising ResNet-8 (+2 blocks: null (1x1 convolution only)).

Xie, Wu, van der Maaten, Yuille, He, "Feature Denoising for Improving Adversarial Robustness", CVPR 2019, at
CIFAR-10 scale: the variant named in variant.json (null), adversarially trained by
``research.feature_denoising.train``; no input transformation. See README.md.
"""

from pathlib import Path

from submission_kit.feature_denoising import defense


def main(argv=None):
    defense.run_folder(Path(__file__).resolve().parent, argv=argv)


if __name__ == "__main__":
    main()
