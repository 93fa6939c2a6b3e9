"""No defense: the zoo's target model (``submission_kit.zoo.TARGET_MODEL``) classifies the images as they are.

The baseline every table needs: what the other defenses add is measured against it.
"""

from submission_kit.defense_blocks import classify


def main(argv=None):
    classify.run_defense(transform=None, argv=argv)


if __name__ == "__main__":
    main()
