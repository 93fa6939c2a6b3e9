"""BPDA-PGD aimed at defenses/nl_means_vdef: Athalye, Carlini & Wagner, "Obfuscated Gradients Give a False
Sense of Security", ICML 2018 (Sec. 4.1).

Forward: the defense's own transformation (submission_kit.defense_blocks.sample_defenses, the defense folder's
source of options), then the zoo's target model; backward: the identity through the denoiser.
Before the denoiser, x ↦ clip(x + v_def, 0, 1) is differentiated exactly; v_def is one fixed array, so EOT over
it is a single exact sample.
PGD (Madry et al. 2018; 20 steps, α = ε / 4, random start) in two label-free runs (adaptive.label_free_pgd):
away from the defense's clean prediction, and toward the target model's least-likely class, kept where the
defense then predicts that class.
"""

from pathlib import Path

from submission_kit.attack_methods import adaptive
from submission_kit.defense_blocks import sample_defenses

DEFENSE = "nl_means_vdef"
#: A copy of defenses/nl_means_vdef/v_def.npy (the attack's sandbox cannot read the defense folder).
V_DEF = Path(__file__).resolve().with_name("v_def.npy")
STEPS = 20


def build(model, device):
    return adaptive.Defended(model, sample_defenses.transform(DEFENSE, v_def=V_DEF, wrap=adaptive.bpda))


def main(argv=None):
    adaptive.run_adaptive_attack(build, steps=STEPS, argv=argv)


if __name__ == "__main__":
    main()
