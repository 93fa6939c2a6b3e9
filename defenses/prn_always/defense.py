"""PRN on every image (no detector), then the zoo's target model.

N. Akhtar, J. Liu, A. Mian, "Defense against Universal Adversarial Perturbations", CVPR 2018: every image I is
classified as 𝒞(ℛ(I)), ℛ the ℓ∞-trained Perturbation Rectifying Network (``submission_kit/prn/weights/vgg6_w48/``,
``python -m research.prn.train``). This is the PRN-restoration setting of the paper's metrics.
"""

from submission_kit.prn import defense


def main(argv=None, weights_dir=None):
    defense.run(always=True, argv=argv, weights_dir=weights_dir)


if __name__ == "__main__":
    main()
