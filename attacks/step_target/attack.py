"""Step target class: Kurakin, Goodfellow, Bengio, "Adversarial Machine Learning at Scale", ICLR 2017
(the NIPS 2017 competition's targeted baseline).

X' = clip(X − ε · sign(∇_X J(X, y_target))), y_target from INPUT_DIR/target_class.csv (an image without a
valid target uses its least-likely class). White-box on the zoo's target model.
"""

from submission_kit.attack_methods import gradient, submission


def main(argv=None):
    submission.run_targeted_attack(
        lambda model, x, eps, target: gradient.step_target(model, x, target, eps=eps), argv=argv
    )


if __name__ == "__main__":
    main()
