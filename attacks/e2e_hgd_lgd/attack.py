"""End-to-end PGD aimed at defenses/hgd_lgd: the attack differentiates through the defense's own denoiser.

Liao et al., "Defense against adversarial attacks using high-level representation guided denoiser", CVPR 2018,
evaluated as Athalye et al. 2018 recommend for differentiable pre-processing: PGD (Madry et al. 2018; 20 steps,
α = ε / 4, random start) on classifier(clamp(D(x), 0, 1)) with D the DUNET loaded by submission_kit.hgd.registry;
two label-free runs (adaptive.label_free_pgd): away from the defense's clean prediction, and toward the
target model's least-likely class, kept where the defense then predicts that class.
"""

from submission_kit.attack_methods import adaptive
from submission_kit.hgd.registry import load_denoiser

DENOISER = "dunet_lgd"
STEPS = 20


def build(model, device):
    return adaptive.Defended(model, load_denoiser(DENOISER, device))


def main(argv=None):
    adaptive.run_adaptive_attack(build, steps=STEPS, argv=argv)


if __name__ == "__main__":
    main()
