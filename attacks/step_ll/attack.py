"""Step least-likely class: Kurakin, Goodfellow, Bengio, "Adversarial Machine Learning at Scale", ICLR 2017.

X' = clip(X − ε · sign(∇_X J(X, y_LL))), y_LL = argmin of the target model's clean prediction.
White-box on the zoo's target model.
"""

from submission_kit.attack_methods import gradient, submission


def main(argv=None):
    submission.run_attack(lambda model, x, eps: gradient.step_ll(model, x, eps=eps), argv=argv)


if __name__ == "__main__":
    main()
