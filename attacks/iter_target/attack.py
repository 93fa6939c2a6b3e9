"""Iterative target class: Kurakin, Goodfellow, Bengio, "Adversarial examples in the physical world", ICLR
workshop 2017 (the iterative least-likely method with the target from target_class.csv).

X'_{n+1} = Clip_{X,ε}(X'_n − α · sign(∇_X J(X'_n, y_target))), α = 1/255, N = min(ε + 4, 1.25 ε) iterations
(ε in 0-255 units). An image without a valid target uses its least-likely class.
White-box on the zoo's target model.
"""

from submission_kit.attack_methods import gradient, submission


def main(argv=None):
    submission.run_targeted_attack(
        lambda model, x, eps, target: gradient.iter_target(model, x, target, eps=eps, alpha=1 / 255), argv=argv
    )


if __name__ == "__main__":
    main()
