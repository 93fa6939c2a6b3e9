"""Denoising defenses as batch transformations for :func:`submission_kit.defense_blocks.classify.run_defense`.

S. Lee, S. Park, J. Lee, "Defensive denoising methods against adversarial attack", 2018: the input
is denoised with the ROF model (total variation) or non-local means before the classifier, optionally after
adding a fixed defensive perturbation ``v_def`` (:mod:`submission_kit.defense_blocks.vdef`). JPEG compression (Dziugaite
et
al. 2016; Das et al. 2017; Guo et al. 2018) is the classic baseline of the same kind.

Every transformation takes float images (N, 3, H, W) in [0, 1] on any device and returns the same shape, dtype
and device, in [0, 1]. The per-image work is done by :mod:`submission_kit.defense_blocks.filters` on the CPU (float64),
spread over ``n_jobs`` workers (joblib; -1 = all cores); results do not depend on ``n_jobs``. Example::

    from functools import partial
    from submission_kit.defense_blocks import classify, denoise

    classify.run_defense(transform=partial(denoise.tv_denoise, weight=10.0))
"""

from __future__ import annotations

from typing import Any

import torch

from submission_kit.attack_methods import universal
from submission_kit.defense_blocks import filters
from submission_kit.defense_blocks.classify import Transform

__all__ = ["apply_filter", "jpeg", "nl_means", "tv_denoise", "with_offset"]


def apply_filter(images: torch.Tensor, function: filters.Filter, *, n_jobs: int = -1,
                 **options: Any) -> torch.Tensor:
    """Apply a per-image filter of :mod:`submission_kit.defense_blocks.filters` to a batch of images.

    Args:
        images: float (N, 3, H, W) in [0, 1], any device; not modified.
        function: Per-image filter, e.g. :func:`submission_kit.defense_blocks.filters.rof`.
        n_jobs: Workers (-1 = all cores, 1 = serial).
        **options: The filter's keyword arguments.

    Returns:
        Filtered images, float (N, 3, H, W) in [0, 1], ``images``' dtype and device.
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"expected float images of shape (N, 3, H, W) in [0, 1], got {shape}")
    hwc = images.detach().permute(0, 2, 3, 1).to("cpu", torch.float64).numpy()
    out = filters.map_images(function, hwc, n_jobs=n_jobs, **options)
    result = torch.from_numpy(out).permute(0, 3, 1, 2).clamp_(0.0, 1.0)
    return result.to(device=images.device, dtype=images.dtype).contiguous()


def tv_denoise(images: torch.Tensor, *, weight: float = 10.0, max_num_iter: int = 100, eps: float = 1e-3,
               isotropic: bool = True, n_jobs: int = -1) -> torch.Tensor:
    """D_ROF: total variation (ROF) denoising, ``skimage.restoration.denoise_tv_bregman`` per channel.

    ``weight`` is scikit-image's fidelity weight on [0, 1] images (smaller = smoother; the paper's 10); see
    :func:`submission_kit.defense_blocks.filters.rof` for the convention and why bregman rather than chambolle.

    Args:
        images: float (N, 3, H, W) in [0, 1].
        weight: ``denoise_tv_bregman`` weight (λ/2 of the ROF functional).
        max_num_iter: Split-Bregman iterations at most.
        eps: Stopping tolerance.
        isotropic: Isotropic total variation.
        n_jobs: Workers (-1 = all cores).

    Returns:
        float (N, 3, H, W) in [0, 1].
    """
    return apply_filter(images, filters.rof, n_jobs=n_jobs, weight=weight, max_num_iter=max_num_iter, eps=eps,
                        isotropic=isotropic)


def nl_means(images: torch.Tensor, *, patch_size: int = 2, patch_distance: int = 3, h: float = 0.05,
             fast_mode: bool = True, sigma: float = 0.0, n_jobs: int = -1) -> torch.Tensor:
    """D_nlm: non-local means, ``skimage.restoration.denoise_nl_means`` with colour patches.

    Defaults are the paper's (patch size 2 — rounded up to 3 by scikit-image —, patch distance 3, h = 0.05 on
    [0, 1]) with scikit-image's ``fast_mode=True``; see :func:`submission_kit.defense_blocks.filters.nl_means`.

    Args:
        images: float (N, 3, H, W) in [0, 1].
        patch_size: Patch side (even values are rounded up).
        patch_distance: Search distance in pixels.
        h: Cut-off distance on the [0, 1] scale.
        fast_mode: scikit-image's fast algorithm.
        sigma: Noise standard deviation (0 = not used).
        n_jobs: Workers (-1 = all cores).

    Returns:
        float (N, 3, H, W) in [0, 1].
    """
    return apply_filter(images, filters.nl_means, n_jobs=n_jobs, patch_size=patch_size,
                        patch_distance=patch_distance, h=h, fast_mode=fast_mode, sigma=sigma)


def jpeg(images: torch.Tensor, *, quality: int = 75, subsampling: str = "4:2:0", n_jobs: int = -1) -> torch.Tensor:
    """JPEG compression and decompression in memory (Pillow), after rounding to 8 bits.

    Args:
        images: float (N, 3, H, W) in [0, 1].
        quality: JPEG quality 1-95 (75 as in Guo et al. 2018).
        subsampling: Chroma subsampling (``"4:2:0"`` is Pillow's default).
        n_jobs: Workers (-1 = all cores).

    Returns:
        float (N, 3, H, W) in [0, 1], multiples of 1/255.
    """
    return apply_filter(images, filters.jpeg, n_jobs=n_jobs, quality=quality, subsampling=subsampling)


def with_offset(transform: Transform, offset: torch.Tensor) -> Transform:
    """``x ↦ transform(clip(x + offset, 0, 1))``: add a fixed perturbation (v_def) before a transformation.

    Args:
        transform: A transformation of this module (bind its options with ``functools.partial``).
        offset: float (3, h, w) on the [0, 1] scale; tiled periodically when (h, w) differs from the images'.

    Returns:
        The composed transformation (float (N, 3, H, W) in [0, 1] → same).
    """
    offset = offset.detach().float().cpu()

    def offset_then_transform(images: torch.Tensor) -> torch.Tensor:
        return transform(universal.apply_universal(images, offset))

    return offset_then_transform
