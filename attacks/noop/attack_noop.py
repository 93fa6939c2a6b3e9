"""No-op attack: returns every image unchanged (the NIPS 2017 toolkit's ``noop`` baseline).

Kurakin et al., "Adversarial Attacks and Defences Competition" (NIPS 2017 competition report, 2018):
the organisers' baselines were a no-op, random noise and FGSM.
"""

from submission_kit import sdk


def main() -> None:
    args = sdk.attack_args()
    for batch in sdk.iter_batches(args.input_dir):
        sdk.save_images(args.output_dir, batch.names, batch.images)


if __name__ == "__main__":
    main()
