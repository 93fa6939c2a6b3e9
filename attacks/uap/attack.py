"""Universal adversarial perturbation: Moosavi-Dezfooli, Fawzi, Fawzi, Frossard, CVPR 2017.

One image-agnostic perturbation v (``uap.npy``: float32 (3, 32, 32) on the [0, 1] scale, ‖v‖∞ ≤ ξ = 10/255)
was computed once with DeepFool (top-k 10, overshoot 0.02, 10 iterations) on CIFAR-10 training images of the
zoo's target model, δ = 0.2 and a pass cap; ``uap.json`` holds the command, seed, counts and fooling rates.
At run time X' = clip(X + clip(v, −ε, ε), 0, 1): no model is loaded or queried.
"""

from pathlib import Path

from submission_kit.attack_methods import submission

UAP_FILE = Path(__file__).resolve().with_name("uap.npy")


def main(argv=None):
    submission.run_universal_attack(UAP_FILE, argv=argv)


if __name__ == "__main__":
    main()
