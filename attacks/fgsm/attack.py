"""FGSM: Goodfellow, Shlens, Szegedy, "Explaining and Harnessing Adversarial Examples", ICLR 2015.

X' = clip(X + ε · sign(∇_X J(X, y))), y = the target model's own prediction, ε = MAX_EPSILON / 255.
White-box on the zoo's target model.
"""

from submission_kit.attack_methods import gradient, submission


def main(argv=None):
    submission.run_attack(lambda model, x, eps: gradient.fgsm(model, x, eps=eps), argv=argv)


if __name__ == "__main__":
    main()
