"""APGD-CE then APGD-T: Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks", ICML 2020.

AutoAttack's standard APGD stages on the zoo's target model: APGD-CE (N_iter = 100, one run), then the targeted
DLR loss towards each of the K − 1 = 9 next most likely classes (N_iter = 100 each) on the images APGD-CE left
unchanged in class; y = the target model's prediction on the clean image. Implementation: torchattacks' APGD and
APGDT (ports of the authors' reference code), see submission_kit.attack_methods.autoattack.
"""

from submission_kit.attack_methods import autoattack, submission

N_ITER = 100


def main(argv=None):
    submission.run_attack(lambda model, x, eps: autoattack.apgd(model, x, eps=eps, n_iter=N_ITER), argv=argv)


if __name__ == "__main__":
    main()
