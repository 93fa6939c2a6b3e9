"""Per-image input filters of the denoising defenses, and a parallel map over a batch (numpy only, no torch).

The filters take and return one float64 image (H, W, 3) on the [0, 1] scale. Every scikit-image call names the
channel axis (``channel_axis=-1``): without it ``denoise_nl_means`` (and ``denoise_tv_chambolle``) treat an
(H, W, 3) array as a 3-D volume and smooth across the three colour planes as if they were neighbouring slices;
``denoise_tv_bregman`` then runs one stopping test over all channels together. With it, NL-means compares colour
patches and TV denoises each colour plane on its own.

* :func:`rof` -- Rudin-Osher-Fatemi total variation denoising (Rudin, Osher, Fatemi 1992) with
  ``skimage.restoration.denoise_tv_bregman`` (split Bregman, Goldstein & Osher 2009), as in Lee, Park & Lee 2018.
* :func:`nl_means` -- non-local means (Buades, Coll, Morel 2005) with ``skimage.restoration.denoise_nl_means``.
* :func:`jpeg` -- JPEG compression and decompression in memory with Pillow (Dziugaite et al. 2016; Das et al.
  2017; Guo et al. 2018).
* :func:`map_images` -- applies one of them to every image of an (N, H, W, 3) array with joblib.

This module imports neither torch nor the harness, so that with ``backend="loky"`` worker processes start quickly;
scikit-image and joblib are imported by the functions that call them (a JPEG defense run on one thread needs
neither).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

from submission_kit import contract

__all__ = ["BACKEND", "CHUNKS_PER_WORKER", "Filter", "jpeg", "map_images", "nl_means", "rof", "workers"]

#: One image (H, W, 3) float64 in [0, 1] → same shape.
Filter = Callable[..., np.ndarray]

#: joblib backend of :func:`map_images`. Threads: scikit-image's Cython loops release the GIL for ~90 % of the
#: work, and threads cost nothing to start, whereas worker processes ("loky") take a second or more to start in
#: every defense run and must ship the images both ways; on 2 cores and 1,000 CIFAR images threads gave 1.7-1.85×,
#: processes 1.3-1.65× (``benchmarks/denoise_speed.py --backend``).
BACKEND = "threading"
#: Chunks handed to each worker: a few per worker balance the load without paying per-image dispatch costs.
CHUNKS_PER_WORKER = 4


def rof(image: np.ndarray, *, weight: float = 10.0, max_num_iter: int = 100, eps: float = 1e-3,
        isotropic: bool = True) -> np.ndarray:
    """ROF (total variation) denoising of one colour image, each channel on its own (as a grey image).

    Weight convention: ``denoise_tv_bregman`` solves the ROF problem ``min_u TV(u) + λ/2 · ‖u − f‖²`` with
    ``weight = λ/2`` (Getreuer 2012), so the weight is a *fidelity* weight: **smaller weight = more smoothing**,
    and because TV scales linearly and the fidelity term quadratically with intensity, weight w on [0, 1] data
    equals weight w/255 on 0-255 data. Lee, Park & Lee's "weight of 10" (and their sweep 5, 10, 20) is read as
    this function's ``weight`` on [0, 1] images, because 5 is scikit-image's default for it and 5-20 gives visible
    but moderate smoothing of 32×32 images. ``denoise_tv_chambolle`` has the opposite convention (a TV weight: larger =
    more
    smoothing); its weight 10 on [0, 1] data wipes out most of a 32×32 image's contrast.

    Args:
        image: float (H, W, 3) in [0, 1].
        weight: Fidelity weight λ (scikit-image's ``weight``); the paper's weight.
        max_num_iter: Split-Bregman iterations at most (scikit-image's default).
        eps: Stopping tolerance on the change of the iterate (scikit-image's default).
        isotropic: Isotropic (not anisotropic) total variation (scikit-image's default).

    Returns:
        float64 (H, W, 3), same scale as ``image``.
    """
    from skimage.restoration import denoise_tv_bregman

    image = np.asarray(image, dtype=np.float64)
    # One call per channel: scikit-image 0.26's own channel loop reuses its output buffer, so channel c would
    # start from channel c-1's solution (order-dependent results, up to ~4 grey levels at eps=1e-3).
    return np.concatenate([
        denoise_tv_bregman(image[..., c:c + 1], weight=weight, max_num_iter=max_num_iter, eps=eps,
                           isotropic=isotropic, channel_axis=-1).reshape(image.shape[:2] + (1,))
        for c in range(image.shape[-1])], axis=-1)


def nl_means(image: np.ndarray, *, patch_size: int = 2, patch_distance: int = 3, h: float = 0.05,
             fast_mode: bool = True, sigma: float = 0.0) -> np.ndarray:
    """Non-local means denoising of one colour image (patch distances over all three channels).

    The defaults are Lee, Park & Lee's: patch size 2, patch distance 3, cut-off distance h = 0.05 on [0, 1]
    images. scikit-image uses odd patches centred on the pixel, so **an even ``patch_size`` is rounded up**
    (2 → a 3×3 patch; ``patch_size // 2`` pixels on each side). ``patch_distance`` 3 means a 7×7 search window.
    ``fast_mode=True`` is scikit-image's default (which the paper presumably used): uniform spatial weights
    inside a patch; ``False`` (Gaussian-weighted patches) gives different results and is several times slower.

    Args:
        image: float (H, W, 3) in [0, 1].
        patch_size: Patch side (scikit-image's ``patch_size``; even values are rounded up).
        patch_distance: Largest distance, in pixels, to search patches from (``patch_distance``).
        h: Cut-off distance (``h``) in intensity units of the [0, 1] scale; larger = blurrier.
        fast_mode: scikit-image's fast algorithm (``fast_mode``).
        sigma: Noise standard deviation subtracted from patch distances (``sigma``; 0 as in the paper).

    Returns:
        float64 (H, W, 3), same scale as ``image``.
    """
    from skimage.restoration import denoise_nl_means

    return denoise_nl_means(np.asarray(image, dtype=np.float64), patch_size=patch_size,
                            patch_distance=patch_distance, h=h, fast_mode=fast_mode, sigma=sigma,
                            preserve_range=True, channel_axis=-1)


def jpeg(image: np.ndarray, *, quality: int = 75, subsampling: str = "4:2:0") -> np.ndarray:
    """JPEG-compress one image in memory with Pillow and decode it again.

    The image is rounded to 8 bits first (``round(255 · x)``), as a JPEG file holds 8-bit samples.

    Args:
        image: float (H, W, 3) in [0, 1].
        quality: Pillow/libjpeg quality 1-95 (75: Guo et al. 2018 and Pillow's default).
        subsampling: Chroma subsampling, ``"4:4:4"``, ``"4:2:2"`` or ``"4:2:0"`` (Pillow's default).

    Returns:
        float64 (H, W, 3) in [0, 1], multiples of 1/255.
    """
    pixels = contract.to_uint8(image)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buffer, format="JPEG", quality=int(quality), subsampling=subsampling)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return contract.to_float(np.asarray(decoded.convert("RGB")), dtype=np.float64)


def workers(n_jobs: int) -> int:
    """Number of workers for ``n_jobs``: itself when positive; -1 = all cores, -2 = all but one, ...

    "All cores" is capped by ``OMP_NUM_THREADS`` when it is set: the harness sets it to each run's share of the
    CPU when it runs several submissions at once (``--jobs``), and the workers should stay within that share.
    """
    if n_jobs == 0:
        raise ValueError("n_jobs must be non-zero (1 = serial, -1 = all cores)")
    if n_jobs > 0:
        return n_jobs
    import joblib

    cores = joblib.cpu_count()
    share = os.environ.get("OMP_NUM_THREADS", "")
    if share.isdigit() and int(share) > 0:
        cores = min(cores, int(share))
    return max(1, cores + 1 + n_jobs)


def _apply(function: Filter, images: np.ndarray, options: dict[str, Any]) -> np.ndarray:
    """Apply ``function`` to each image of ``images`` (n, H, W, 3) in order; float64 (n, H, W, 3)."""
    return np.stack([function(image, **options) for image in images]).astype(np.float64, copy=False)


def map_images(function: Filter, images: np.ndarray, *, n_jobs: int = -1, backend: str = BACKEND,
               **options: Any) -> np.ndarray:
    """Apply a per-image filter to every image of a batch, in parallel across images.

    Each image is filtered on its own, so the result does not depend on ``n_jobs`` or on how the batch is split.

    Args:
        function: A filter of this module (or any picklable ``f(image, **options) -> image``).
        images: float (N, H, W, 3) in [0, 1].
        n_jobs: Workers (joblib convention: -1 = all cores, 1 = serial in this process).
        backend: joblib backend (``"loky"`` processes or ``"threading"``).
        **options: Keyword arguments of ``function`` (e.g. ``weight=10.0``).

    Returns:
        float64 (N, H, W, 3).
    """
    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected images of shape (N, H, W, 3), got {images.shape}")
    count = workers(n_jobs)
    if count == 1 or len(images) <= 1:
        return _apply(function, images, options) if len(images) else images.copy()
    import joblib

    chunks = np.array_split(images, min(len(images), count * CHUNKS_PER_WORKER))
    parts = joblib.Parallel(n_jobs=count, backend=backend)(
        joblib.delayed(_apply)(function, chunk, options) for chunk in chunks)
    return np.concatenate(parts)
