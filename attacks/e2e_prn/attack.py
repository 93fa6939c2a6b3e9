"""PGD on both branches, aimed at defenses/prn: the detector gate no longer matters.

Akhtar, Liu & Mian, "Defense against Universal Adversarial Perturbations", CVPR 2018: the defense classifies
𝒞(ℛ(I)) when its SVM detector flags I, else 𝒞(I). The SVM has no gradient, so PGD (20 steps, α = ε / 4, random
start) lowers log p(y | I) + log p(y | ℛ(I)) at once (submission_kit.attack_methods.adaptive.BothBranches, with
the real ℛ from submission_kit.prn.defense.load_defense), in two label-free runs (adaptive.label_free_pgd): away
from the gated defense's own clean prediction (y), and toward the target model's least-likely class, kept where
the gated defense then predicts that class.
"""

from submission_kit import zoo
from submission_kit.attack_methods import adaptive
from submission_kit.defense_blocks import classify
from submission_kit.prn.defense import load_defense

STEPS = 20


def _defense(device):
    return load_defense(zoo.TARGET_MODEL, always=False, device=device)


def build(model, device):
    return adaptive.BothBranches(model, _defense(device).prn)


def labels(model, device):
    defense = _defense(device)
    return lambda x: classify.predict(model, x, transform=defense)


def main(argv=None):
    adaptive.run_adaptive_attack(build, labels=labels, steps=STEPS, argv=argv)


if __name__ == "__main__":
    main()
