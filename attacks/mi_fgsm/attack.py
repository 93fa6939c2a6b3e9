"""MI-FGSM: Dong et al., "Boosting Adversarial Attacks with Momentum", CVPR 2018 (NIPS 2017 winner).

g ← μ · g + ∇/‖∇‖₁, X* ← clip(X* + α · sign(g)) with decay μ = 1.0, T = 10 iterations, α = ε / T,
y = the target model's first prediction. White-box on the zoo's target model.
"""

from submission_kit.attack_methods import gradient, submission

MU = 1.0
T = 10


def main(argv=None):
    submission.run_attack(lambda model, x, eps: gradient.mi_fgsm(model, x, eps=eps, steps=T, mu=MU), argv=argv)


if __name__ == "__main__":
    main()
