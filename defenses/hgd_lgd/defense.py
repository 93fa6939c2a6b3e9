"""HGD defense: a DUNET denoiser trained with the LGD loss, then the zoo's target model.

F. Liao et al., "Defense against adversarial attacks using high-level representation guided denoiser", CVPR 2018.
LGD, logits guided denoiser: L1 between the target model's logits on the denoised and the clean image;
the paper's default HGD.
Weights: ``submission_kit/hgd/weights/dunet_lgd.pt``; a missing file stops the run with the command that trains it.
Code: ``submission_kit/hgd/``; docs/hgd.md.
"""

from submission_kit.hgd import defense


def main(argv=None):
    defense.run_defense("dunet_lgd", argv=argv)


if __name__ == "__main__":
    main()
