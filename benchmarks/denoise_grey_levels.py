"""How much each denoising filter changes CIFAR-10 test images, in grey levels (the figures of docs/denoising.md).

Mean absolute change ``mean |255 · (f(x) − x)|`` over all pixels and channels of ``--images`` shared test images
(numpy ``default_rng(seed).choice``, sorted, as the other benchmarks) for:

* ROF, ``filters.rof`` (``denoise_tv_bregman`` per channel) at weights 5, 10 and 20 (Lee et al.'s sweep);
* ``denoise_tv_chambolle`` at weight 10 (the opposite weight convention, for comparison);
* JPEG (``filters.jpeg``) at quality 75 and 50;
* the scikit-image 0.26 channel-order effect worked around by ``filters.rof``: largest difference, in grey levels,
  between ``denoise_tv_bregman(x, weight=10, channel_axis=-1)`` on the whole colour image and ``filters.rof``.

::

    python benchmarks/denoise_grey_levels.py --images 1000
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

import numpy as np
from skimage.restoration import denoise_tv_bregman, denoise_tv_chambolle

from research import cifar10
from submission_kit.defense_blocks import filters


def mean_change(function: Callable[[np.ndarray], np.ndarray], images: np.ndarray) -> float:
    """Mean absolute change in grey levels (0–255 scale) of ``function`` over float (N, H, W, 3) [0, 1] images."""
    return float(np.mean([np.abs(function(image) - image).mean() for image in images]) * 255)


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Print one line per filter and return the figures (grey levels)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1000, help="shared test images (seeded subset)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    images, _ = cifar10.load_split("test")
    subset = np.sort(np.random.default_rng(args.seed).choice(len(images), size=min(args.images, len(images)),
                                                             replace=False))
    x = images[subset].astype(np.float64) / 255
    figures = {f"ROF weight {w}": mean_change(lambda im, w=w: filters.rof(im, weight=w), x) for w in (5, 10, 20)}
    figures["TV Chambolle weight 10"] = mean_change(
        lambda im: denoise_tv_chambolle(im, weight=10, channel_axis=-1), x)
    figures |= {f"JPEG quality {q}": mean_change(lambda im, q=q: filters.jpeg(im, quality=q), x) for q in (75, 50)}
    figures["ROF whole-image call vs per channel, largest difference"] = float(max(
        np.abs(denoise_tv_bregman(im, weight=10, channel_axis=-1) - filters.rof(im, weight=10)).max() for im in x)
        * 255)
    print(f"grey levels (0-255), {len(x)} shared CIFAR-10 test images (seed {args.seed}):")
    for name, value in figures.items():
        print(f"  {name}: {value:.2f}")
    return figures


if __name__ == "__main__":
    main()
