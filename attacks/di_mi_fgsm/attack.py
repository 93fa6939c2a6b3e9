"""M-DI²-FGSM: Xie et al., "Improving Transferability of Adversarial Examples with Input Diversity", CVPR 2019.

MI-FGSM (μ = 1.0, T = 10, α = ε / T) whose gradient is taken at T(X; p): random resize to rnd ∈ [32, 35) and random
zero padding to 35 × 35 (the paper's 299 → 330 ratio) with probability p = 0.5, on a logit ensemble of the zoo's
NON-target models (black-box transfer to the target).
"""

from submission_kit.attack_methods import submission, transfer

MU = 1.0
T = 10
P = 0.5
RESIZE_RATE = 1.1


def main(argv=None):
    submission.run_attack(
        lambda model, x, eps: transfer.di_mi_fgsm(model, x, eps=eps, steps=T, mu=MU, diversity_prob=P,
                                                  resize_rate=RESIZE_RATE),
        models=submission.non_target_models(), argv=argv)


if __name__ == "__main__":
    main()
