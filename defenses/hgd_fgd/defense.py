"""HGD defense: a DUNET denoiser trained with the FGD loss, then the zoo's target model.

F. Liao et al., "Defense against adversarial attacks using high-level representation guided denoiser", CVPR 2018.
FGD, feature guided denoiser: L1 between the target model's last convolutional feature maps on the
denoised and the clean image; the loss of the authors' NIPS 2017 winning entry.
Weights: ``submission_kit/hgd/weights/dunet_fgd.pt``; a missing file stops the run with the command that trains it.
Code: ``submission_kit/hgd/``; docs/hgd.md.
"""

from submission_kit.hgd import defense


def main(argv=None):
    defense.run_defense("dunet_fgd", argv=argv)


if __name__ == "__main__":
    main()
