"""HGD defense: a DUNET denoiser trained with the CGD loss, then the zoo's target model.

F. Liao et al., "Defense against adversarial attacks using high-level representation guided denoiser", CVPR 2018.
CGD, class label guided denoiser: the target model's cross-entropy with the true label on the denoised
image.
Weights: ``submission_kit/hgd/weights/dunet_cgd.pt``; a missing file stops the run with the command that trains it.
Code: ``submission_kit/hgd/``; docs/hgd.md.
"""

from submission_kit.hgd import defense


def main(argv=None):
    defense.run_defense("dunet_cgd", argv=argv)


if __name__ == "__main__":
    main()
