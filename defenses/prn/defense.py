"""PRN defense with its detector, then the zoo's target model.

N. Akhtar, J. Liu, A. Mian, "Defense against Universal Adversarial Perturbations", CVPR 2018: each image I is
classified as 𝒞(ℛ(I)) if the detector 𝒟(I) = SVM(log|DCT(gray(I − ℛ(I)))|) flags it as perturbed, else as 𝒞(I).
ℛ is the ℓ∞-trained Perturbation Rectifying Network; weights and detector come from
``submission_kit/prn/weights/vgg6_w48/`` (``python -m research.prn.train`` / ``research.prn.train_detector``).
"""

from submission_kit.prn import defense


def main(argv=None, weights_dir=None):
    defense.run(always=False, argv=argv, weights_dir=weights_dir)


if __name__ == "__main__":
    main()
