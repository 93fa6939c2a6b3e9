"""HGD defense: a DUNET denoiser trained with the PGD loss, then the zoo's target model.

F. Liao et al., "Defense against adversarial attacks using high-level representation guided denoiser", CVPR 2018.
PGD, pixel guided denoiser: L1 between the denoised and the clean image; the pixel-level baseline of
Tables 2-3, which suffers from error amplification.
Weights: ``submission_kit/hgd/weights/dunet_pgd.pt``; a missing file stops the run with the command that trains it.
Code: ``submission_kit/hgd/``; docs/hgd.md.
"""

from submission_kit.hgd import defense


def main(argv=None):
    defense.run_defense("dunet_pgd", argv=argv)


if __name__ == "__main__":
    main()
