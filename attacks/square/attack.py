"""The Square attack: Andriushchenko, Croce, Flammarion & Hein, "Square Attack: a query-efficient black-box
adversarial attack via random search", ECCV 2020.

Score-based black box on the zoo's target model (logits only, no gradient): L∞, margin loss, p_init = 0.8,
N = 5000 queries per image (AutoAttack's budget); y = the target model's prediction on the clean image.
"""

from submission_kit.attack_methods import autoattack, submission

N_QUERIES = 5000
P_INIT = 0.8


def main(argv=None):
    submission.run_attack(
        lambda model, x, eps: autoattack.square(model, x, eps=eps, n_queries=N_QUERIES, p_init=P_INIT), argv=argv)


if __name__ == "__main__":
    main()
