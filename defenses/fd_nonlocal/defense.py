"""Feature-denoising ResNet-8 (+2 blocks: non-local means, Gaussian (softmax, θ/φ embeddings)).

Xie, Wu, van der Maaten, Yuille, He, "Feature Denoising for Improving Adversarial Robustness", CVPR 2019, at
CIFAR-10 scale: the variant named in variant.json (nonlocal_gaussian), adversarially trained by
``research.feature_denoising.train``; no input transformation. See README.md.
"""

from pathlib import Path

from submission_kit.feature_denoising import defense


def main(argv=None):
    defense.run_folder(Path(__file__).resolve().parent, argv=argv)


if __name__ == "__main__":
    main()
