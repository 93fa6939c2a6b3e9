"""PGD: Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018.

Random start X_0 = X + U(−ε, ε), then 20 steps X ← Π_{ε-ball ∩ [0,1]}(X + α · sign(∇_X J(X, y))) with
α = 2/255 (the paper's CIFAR-10 evaluation: 20 steps of 2/255), y = the target model's own prediction.
The random start comes from a generator seeded with SEED, so reruns give identical images.
White-box on the zoo's target model.
"""

import torch

from submission_kit.attack_methods import gradient, submission

ALPHA = 2 / 255
STEPS = 20
SEED = 0


def main(argv=None):
    generator = torch.Generator().manual_seed(SEED)
    submission.run_attack(
        lambda model, x, eps: gradient.pgd(model, x, eps=eps, alpha=ALPHA, steps=STEPS, generator=generator),
        argv=argv,
    )


if __name__ == "__main__":
    main()
