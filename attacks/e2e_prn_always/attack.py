"""End-to-end PGD aimed at defenses/prn_always: gradients through the defense's own rectifier ℛ.

Akhtar, Liu & Mian, "Defense against Universal Adversarial Perturbations", CVPR 2018 (PRN without detector),
attacked with PGD (20 steps, α = ε / 4, random start) on classifier(clamp(ℛ(x), 0, 1)); ℛ is loaded by
submission_kit.prn.defense.load_defense; two label-free runs (adaptive.label_free_pgd): away from the defense's
clean prediction, and toward the target model's least-likely class, kept where the defense then predicts that
class.
"""

from submission_kit import zoo
from submission_kit.attack_methods import adaptive
from submission_kit.prn.defense import load_defense

STEPS = 20


def build(model, device):
    return adaptive.Defended(model, load_defense(zoo.TARGET_MODEL, always=True, device=device).prn)


def main(argv=None):
    adaptive.run_adaptive_attack(build, steps=STEPS, argv=argv)


if __name__ == "__main__":
    main()
