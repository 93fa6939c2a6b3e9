"""Black-box transfer attack: MI-FGSM on an ensemble of the zoo's non-target models.

Dong et al., "Boosting Adversarial Attacks with Momentum", CVPR 2018: momentum (μ = 1.0, T = 10, α = ε / T)
on the fused logits of several models (equal weights) transfers to unseen models. The ensemble is every zoo
model except zoo.TARGET_MODEL, which this attack never queries, so it is black-box for the target.
"""

from submission_kit.attack_methods import gradient, submission

MU = 1.0
T = 10


def main(argv=None):
    submission.run_attack(
        lambda model, x, eps: gradient.mi_fgsm(model, x, eps=eps, steps=T, mu=MU),
        models=submission.non_target_models(),
        argv=argv,
    )


if __name__ == "__main__":
    main()
