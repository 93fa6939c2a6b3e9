"""BPDA-PGD aimed at defenses/tv_denoise_vdef: Athalye, Carlini & Wagner, "Obfuscated Gradients Give a False Sense of
Security", ICML 2018 (Sec. 4.1).

The defense's own transformation (submission_kit.defense_blocks.denoise, same options as the defense
folder) after x ↦ clip(x + v_def, 0, 1) (differentiated exactly); the denoiser's backward pass is the identity.
PGD, 20 steps, α = ε / 4, random start, y = the defense's prediction on the clean image. v_def is one fixed
array, so EOT over it is a single exact sample.
"""

from functools import partial
from pathlib import Path

from submission_kit.attack_methods import adaptive, universal
from submission_kit.defense_blocks import denoise, vdef

#: A copy of defenses/tv_denoise_vdef/v_def.npy (the attack's sandbox cannot read the defense folder; a test checks the
#: two files are identical).
V_DEF = Path(__file__).resolve().with_name("v_def.npy")
STEPS = 20


def build(model, device):
    v = vdef.load(V_DEF).to(device)
    approximated = adaptive.bpda(partial(denoise.tv_denoise, weight=10.0))
    return adaptive.Defended(model, lambda x: approximated(universal.apply_universal(x, v)))


def main(argv=None):
    adaptive.run_adaptive_attack(build, steps=STEPS, argv=argv)


if __name__ == "__main__":
    main()
