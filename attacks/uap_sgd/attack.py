"""Universal adversarial perturbation by stochastic gradient ascent: Shafahi, Najibi, Xu, Dickerson, Davis,
Goldstein, "Universal adversarial training", AAAI 2020 (Algorithm 1); universal perturbations after
Moosavi-Dezfooli et al., CVPR 2017.

One image-agnostic perturbation v (``uap.npy``: float32 (3, 32, 32) on the [0, 1] scale, ‖v‖∞ ≤ ξ = 10/255)
was computed once on CIFAR-10 training images of the zoo's target model by sign-gradient ascent of the
cross-entropy of the model's clean predictions over minibatches (step 1.275/255, 10 epochs); ``uap.json``
holds the command, seed and fooling rates. At run time X' = clip(X + clip(v, −ε, ε), 0, 1): no model is
loaded or queried.
"""

from pathlib import Path

from submission_kit.attack_methods import submission

UAP_FILE = Path(__file__).resolve().with_name("uap.npy")


def main(argv=None):
    submission.run_universal_attack(UAP_FILE, argv=argv)


if __name__ == "__main__":
    main()
