"""CW-L∞: PGD (Madry et al., ICLR 2018) on the Carlini-Wagner margin loss max_{i≠y} Z_i − Z_y (Carlini & Wagner,
IEEE S&P 2017, objective f_6), 30 steps of α = ε / 4 from a random start in the ε-ball; y = the target model's
prediction on the clean image. White-box on the zoo's target model.
"""

from submission_kit.attack_methods import autoattack, submission

STEPS = 30


def main(argv=None):
    submission.run_attack(lambda model, x, eps: autoattack.cw_linf(model, x, eps=eps, steps=STEPS), argv=argv)


if __name__ == "__main__":
    main()
