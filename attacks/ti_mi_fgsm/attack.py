"""TI-MI-FGSM: Dong, Pang, Su & Zhu, "Evading Defenses to Transferable Adversarial Examples by Translation-Invariant
Attacks", CVPR 2019.

MI-FGSM (μ = 1.0, T = 10, α = ε / T) with the gradient convolved by a Gaussian kernel W (len_kernel = 5, nsig = 3:
the paper's 15 px on 299-px images scaled to 32-px CIFAR-10 images would be under 2 px; 5 keeps a smoothing
effect) on a logit ensemble of the zoo's NON-target models (black-box transfer to the target).
"""

from submission_kit.attack_methods import submission, transfer

MU = 1.0
T = 10
LEN_KERNEL = 5
NSIG = 3.0


def main(argv=None):
    submission.run_attack(
        lambda model, x, eps: transfer.ti_mi_fgsm(model, x, eps=eps, steps=T, mu=MU, len_kernel=LEN_KERNEL,
                                                  nsig=NSIG),
        models=submission.non_target_models(), argv=argv)


if __name__ == "__main__":
    main()
