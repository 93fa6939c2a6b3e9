"""I-FGSM (basic iterative method): Kurakin, Goodfellow, Bengio, "Adversarial examples in the physical world",
ICLR workshop 2017.

X'_{n+1} = Clip_{X,ε}(X'_n + α · sign(∇_X J(X'_n, y))), α = 1/255, N = min(ε + 4, 1.25 ε) iterations (ε in
0-255 units), y = the target model's own prediction. White-box on the zoo's target model.
"""

from submission_kit.attack_methods import gradient, submission


def main(argv=None):
    submission.run_attack(lambda model, x, eps: gradient.i_fgsm(model, x, eps=eps, alpha=1 / 255), argv=argv)


if __name__ == "__main__":
    main()
