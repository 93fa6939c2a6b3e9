"""BPDA-PGD aimed at defenses/tv_denoise: Athalye, Carlini & Wagner, "Obfuscated Gradients Give a False Sense of
Security", ICML 2018 (Sec. 4.1).

Forward: the defense's own transformation (submission_kit.defense_blocks.denoise, same options as the
defense folder), then the zoo's target model; backward: identity through the transformation. PGD, 20 steps,
α = ε / 4, random start, y = the defense's prediction on the clean image.
"""

from functools import partial

from submission_kit.attack_methods import adaptive
from submission_kit.defense_blocks import denoise

STEPS = 20


def build(model, device):
    return adaptive.Defended(model, adaptive.bpda(partial(denoise.tv_denoise, weight=10.0)))


def main(argv=None):
    adaptive.run_adaptive_attack(build, steps=STEPS, argv=argv)


if __name__ == "__main__":
    main()
