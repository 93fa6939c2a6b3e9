"""Random-noise attack: adds ±MAX_EPSILON with a random sign to every pixel value (NIPS 2017 baseline).

Kurakin et al., "Adversarial Attacks and Defences Competition" (NIPS 2017 competition report, 2018).
The noise is drawn from a generator seeded with ``SEED`` and the image name, so reruns are identical.
"""

import zlib

import numpy as np

from submission_kit import sdk

SEED = 2017


def main() -> None:
    args = sdk.attack_args()
    eps = args.max_epsilon
    for batch in sdk.iter_batches(args.input_dir):
        noisy = []
        for name, image in zip(batch.names, batch.images):
            rng = np.random.default_rng([SEED, zlib.crc32(name.encode())])
            sign = rng.choice(np.array([-1, 1], dtype=np.int16), size=image.shape)
            noisy.append(np.clip(image.astype(np.int16) + sign * eps, 0, 255).astype(np.uint8))
        sdk.save_images(args.output_dir, batch.names, np.stack(noisy))


if __name__ == "__main__":
    main()
