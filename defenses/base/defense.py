"""No defense: the zoo's target model (``harness.zoo.TARGET_MODEL``) classifies the images as they are.

The baseline every table needs: what the other defenses add is measured against it.
"""

from harness.defenses import classify


def main(argv=None):
    classify.run_defense(transform=None, argv=argv)


if __name__ == "__main__":
    main()
