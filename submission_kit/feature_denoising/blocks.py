"""Feature-denoising operations and the generic denoising block.

C. Xie, Y. Wu, L. van der Maaten, A. Yuille, K. He, "Feature Denoising for Improving Adversarial Robustness",
CVPR 2019 (the seed paper), Sec. 4 and Fig. 4-5. A *denoising operation* (the blue box of Fig. 4) filters a feature
map; a *denoising block* wraps it::

    y = x + BN(Conv1x1(op(x)))          # BN's scale γ initialised to 0, so the block starts as the identity

Operations (``OPS``), all on float feature maps (N, C, H, W) and returning the same shape:

* ``nonlocal_gaussian`` -- non-local means, Eq. (1), with f(x_i, x_j) = exp(θ(x_i)ᵀ φ(x_j) / √d): θ and φ are
  1x1 convolutions to d = C/2 channels and the weights are ``softmax`` over all H·W positions; the weighted mean
  is over x itself (not an embedding of it), so channels of y and x correspond.
* ``nonlocal_dot`` -- Eq. (1) with f(x_i, x_j) = x_iᵀ x_j and C(x) = H·W, no embedding (no parameters).
* ``bilateral`` -- Eq. (2): the Gaussian (softmax) weights of ``nonlocal_gaussian`` restricted to a k x k window
  Ω(i) around each position (k = 3 in the paper).
* ``mean`` -- k x k mean filter (average pooling with stride 1).
* ``median`` -- k x k median filter, Eq. (3), per channel.
* ``null`` -- the identity: the block degenerates to a residual 1x1 convolution (the paper's "null" ablation).

Borders of the local operations (``bilateral``, ``mean``, ``median``): only positions inside the feature map are
neighbours; a window that sticks out of the map is cut, not zero-padded. A corner therefore averages (or takes
the median of, or softmax-weights) its 4 in-map neighbours of a 3 x 3 window and an edge position its 6. For an
even number of values ``median`` returns the lower of the two middle values (``torch.nanmedian``'s convention).

Block-design ablations of the seed's Table 1 are switches of :class:`DenoisingBlock`: ``conv1x1=False`` removes the
1x1 convolution (y = x + BN(op(x)), still the identity at initialisation) and ``residual=False`` removes the skip
connection (y = BN(Conv1x1(op(x))); BN's γ then starts at 1, since with γ = 0 the block would output zeros).

Initialisation follows the authors' code (facebookresearch/ImageNet-Adversarial-Training, ``nets.py``): θ and φ
are drawn from N(0, 0.01²), no biases (a bias on the 1x1 convolution would be cancelled by the BatchNorm after it).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "OPS",
    "DenoisingBlock",
    "DenoisingOp",
    "bilateral_filter",
    "mean_filter",
    "median_filter",
    "nonlocal_dot",
    "nonlocal_gaussian",
]

#: Names of the denoising operations, in the order of the seed's Sec. 4.2 (then the ablation).
OPS: tuple[str, ...] = ("nonlocal_gaussian", "nonlocal_dot", "bilateral", "mean", "median", "null")

#: Operations with θ/φ embeddings (the others have no parameters).
_EMBEDDED = ("nonlocal_gaussian", "bilateral")


def nonlocal_gaussian(x: torch.Tensor, theta: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
    """Gaussian (softmax) non-local means, seed Eq. (1): y_i = Σ_j softmax_j(θ_iᵀφ_j / √d) · x_j.

    Args:
        x: Features (N, C, H, W), any real values.
        theta: Query embedding θ(x), (N, d, H, W).
        phi: Key embedding φ(x), (N, d, H, W).

    Returns:
        (N, C, H, W): at every position a convex combination of x over all H·W positions.
    """
    n, c, h, w = x.shape
    d = theta.shape[1]
    query = theta.reshape(n, d, h * w).transpose(1, 2)  # (N, HW, d)
    key = phi.reshape(n, d, h * w)  # (N, d, HW)
    weights = torch.softmax(torch.bmm(query, key) / math.sqrt(d), dim=-1)  # (N, HW_i, HW_j), rows sum to 1
    values = x.reshape(n, c, h * w)  # (N, C, HW_j)
    return torch.bmm(values, weights.transpose(1, 2)).reshape(n, c, h, w)


def nonlocal_dot(x: torch.Tensor) -> torch.Tensor:
    """Dot-product non-local means, seed Eq. (1): y_i = (1 / (H·W)) Σ_j (x_iᵀ x_j) · x_j, no embedding.

    Computed as (x xᵀ / HW) x_i with the C x C Gram matrix when C <= H·W, else with the HW x HW affinity
    matrix; both orders give the same result (the authors' code picks the cheaper one the same way).

    Args:
        x: Features (N, C, H, W).

    Returns:
        (N, C, H, W). The weights do not sum to 1 (seed Sec. 4.2).
    """
    n, c, h, w = x.shape
    flat = x.reshape(n, c, h * w)  # (N, C, L)
    if c <= h * w:
        gram = torch.bmm(flat, flat.transpose(1, 2))  # (N, C, C) = Σ_j x_j x_jᵀ
        out = torch.bmm(gram, flat)
    else:
        affinity = torch.bmm(flat.transpose(1, 2), flat)  # (N, L, L), symmetric: x_iᵀ x_j
        out = torch.bmm(flat, affinity)
    return (out / (h * w)).reshape(n, c, h, w)


def _shifted(x: torch.Tensor, kernel_size: int, fill: float) -> list[torch.Tensor]:
    """The k·k shifted copies of ``x`` (N, C, H, W) that make up every k x k window, row-major over the window.

    Element ``[dy * k + dx][..., i, j]`` is ``x[..., i + dy - k//2, j + dx - k//2]``, or ``fill`` where that
    position lies outside the map. The copies are views of one padded tensor.
    """
    _, _, h, w = x.shape
    pad = kernel_size // 2
    padded = F.pad(x, (pad, pad, pad, pad), value=fill)
    return [padded[:, :, dy:dy + h, dx:dx + w] for dy in range(kernel_size) for dx in range(kernel_size)]


def _inside(x: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Boolean (k·k, H, W): whether each window position of each output position lies inside the map."""
    ones = torch.ones(1, 1, *x.shape[-2:], dtype=x.dtype, device=x.device)
    return torch.stack(_shifted(ones, kernel_size, 0.0))[:, 0, 0] > 0


def _check_kernel(kernel_size: int) -> None:
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")


def bilateral_filter(x: torch.Tensor, theta: torch.Tensor, phi: torch.Tensor, *, kernel_size: int = 3) -> torch.Tensor:
    """Gaussian bilateral filter, seed Eq. (2): the softmax weights of Eq. (1) over a k x k window Ω(i).

    y_i = Σ_{j ∈ Ω(i)} softmax_j(θ_iᵀφ_j / √d) · x_j, where Ω(i) holds the in-map positions of the k x k window
    centred on i (see the module docstring for borders).

    Args:
        x: Features (N, C, H, W).
        theta: Query embedding θ(x), (N, d, H, W).
        phi: Key embedding φ(x), (N, d, H, W).
        kernel_size: Window side k (odd).

    Returns:
        (N, C, H, W): at every position a convex combination of x over its window.
    """
    _check_kernel(kernel_size)
    d = theta.shape[1]
    # One k·k loop over shifted views instead of unfolding (N, C, k², L) patches: ~2.5x faster on the CPU.
    logits = torch.stack([(theta * key).sum(dim=1) for key in _shifted(phi, kernel_size, 0.0)], dim=1)
    logits = logits.masked_fill(~_inside(x, kernel_size), float("-inf")) / math.sqrt(d)  # (N, k², H, W)
    weights = torch.softmax(logits, dim=1)
    out = torch.zeros_like(x)
    for index, value in enumerate(_shifted(x, kernel_size, 0.0)):
        out = out + weights[:, index : index + 1] * value
    return out


def mean_filter(x: torch.Tensor, *, kernel_size: int = 3) -> torch.Tensor:
    """k x k mean filter (average pooling, stride 1) over the in-map part of each window.

    Args:
        x: Features (N, C, H, W).
        kernel_size: Window side k (odd).

    Returns:
        (N, C, H, W).
    """
    _check_kernel(kernel_size)
    return F.avg_pool2d(x, kernel_size, stride=1, padding=kernel_size // 2, count_include_pad=False)


def median_filter(x: torch.Tensor, *, kernel_size: int = 3) -> torch.Tensor:
    """k x k median filter per channel, seed Eq. (3), over the in-map part of each window.

    Gradients flow to the selected (median) element of each window only.

    Args:
        x: Features (N, C, H, W), finite values.
        kernel_size: Window side k (odd).

    Returns:
        (N, C, H, W); an even count at a border gives the lower middle value.
    """
    _check_kernel(kernel_size)
    windows = torch.stack(_shifted(x, kernel_size, float("nan")), dim=-1)  # outside = NaN, skipped by nanmedian
    return windows.nanmedian(dim=-1).values


class DenoisingOp(nn.Module):
    """One denoising operation (the blue box of the seed's Fig. 4), with its θ/φ embeddings if it has any.

    Args:
        channels: C, channels of the feature map.
        op: One of :data:`OPS`.
        kernel_size: Window side of ``bilateral``, ``mean`` and ``median``.
        embed_channels: d, channels of θ and φ (default C // 2, as in the seed and the authors' code).
    """

    def __init__(self, channels: int, op: str, *, kernel_size: int = 3, embed_channels: int | None = None) -> None:
        super().__init__()
        if op not in OPS:
            raise ValueError(f"unknown denoising operation {op!r}; choices: {', '.join(OPS)}")
        _check_kernel(kernel_size)
        self.op = op
        self.kernel_size = kernel_size
        self.theta: nn.Conv2d | None = None
        self.phi: nn.Conv2d | None = None
        if op in _EMBEDDED:
            d = embed_channels or max(channels // 2, 1)
            self.theta = nn.Conv2d(channels, d, 1, bias=False)
            self.phi = nn.Conv2d(channels, d, 1, bias=False)
            nn.init.normal_(self.theta.weight, std=0.01)
            nn.init.normal_(self.phi.weight, std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Denoise features (N, C, H, W) -> (N, C, H, W)."""
        if self.op == "nonlocal_gaussian":
            return nonlocal_gaussian(x, self.theta(x), self.phi(x))
        if self.op == "nonlocal_dot":
            return nonlocal_dot(x)
        if self.op == "bilateral":
            return bilateral_filter(x, self.theta(x), self.phi(x), kernel_size=self.kernel_size)
        if self.op == "mean":
            return mean_filter(x, kernel_size=self.kernel_size)
        if self.op == "median":
            return median_filter(x, kernel_size=self.kernel_size)
        return x  # null

    def extra_repr(self) -> str:
        return f"op={self.op!r}, kernel_size={self.kernel_size}" if self.op in ("bilateral", "mean", "median") \
            else f"op={self.op!r}"


class DenoisingBlock(nn.Module):
    """The generic denoising block of the seed's Fig. 4: ``x + BN(Conv1x1(op(x)))``.

    With the defaults it is exactly the identity at initialisation (BN's γ = 0 and β = 0), in training and in eval
    mode, so inserting it into a network does not change that network's function until training moves γ.

    Args:
        channels: C, channels in and out.
        op: Denoising operation, one of :data:`OPS`.
        conv1x1: Keep the 1x1 convolution (``False``: the "removing 1x1" ablation of the seed's Table 1).
        residual: Keep the identity skip connection (``False``: the "removing residual" ablation; γ starts at 1).
        kernel_size: Window side of the local operations.
        embed_channels: Channels of θ/φ (default C // 2).
    """

    def __init__(self, channels: int, op: str, *, conv1x1: bool = True, residual: bool = True,
                 kernel_size: int = 3, embed_channels: int | None = None) -> None:
        super().__init__()
        if op == "null" and not conv1x1:
            raise ValueError("a 'null' block without its 1x1 convolution has nothing left to learn")
        self.denoise = DenoisingOp(channels, op, kernel_size=kernel_size, embed_channels=embed_channels)
        self.conv: nn.Module = nn.Conv2d(channels, channels, 1, bias=False) if conv1x1 else nn.Identity()
        if conv1x1:
            nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")
        self.bn = nn.BatchNorm2d(channels)
        self.residual = residual
        if residual:
            nn.init.zeros_(self.bn.weight)  # γ = 0: the block starts as the identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map features (N, C, H, W) to (N, C, H, W)."""
        out = self.bn(self.conv(self.denoise(x)))
        return x + out if self.residual else out

    def extra_repr(self) -> str:
        return f"residual={self.residual}"
