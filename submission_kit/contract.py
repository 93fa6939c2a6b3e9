"""The one I/O contract of the competition: uint8 RGB PNG images and integer ε in 0–255 units.

Every conversion between files, uint8 arrays and float tensors in [0, 1] lives here, and so does the
referee's clipping to the L∞ ball. Nothing else in the project reads or writes competition images.

The ε-ball of a clean uint8 image ``x`` with integer budget ``ε`` is the per-pixel interval
``[clip(x − ε, 0, 255), clip(x + ε, 0, 255)]`` (NIPS 2017 competition rules).
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image, UnidentifiedImageError

_Scalable = TypeVar("_Scalable", bound=Any)

#: The only pixel format the competition accepts: 8-bit RGB.
IMAGE_MODE = "RGB"
#: Largest value an integer ε may take (0–255 units).
MAX_EPSILON = 255


class ImageError(ValueError):
    """An image file that breaks the contract (unreadable, wrong mode, wrong size)."""


class EpsilonError(ValueError):
    """An ε outside the integer range 0–255."""


def parse_epsilon(value: object) -> int:
    """Validate ε and return it as an int.

    Args:
        value: An int or a string such as ``"16"``; 0–255 units, L∞.

    Returns:
        ε as an int in [0, 255].

    Raises:
        EpsilonError: If ``value`` is not an integer or lies outside 0–255.
    """
    if isinstance(value, bool):
        raise EpsilonError(f"epsilon must be an integer in 0..{MAX_EPSILON}, got {value!r}")
    if isinstance(value, (int, np.integer)):
        eps = int(value)
    else:
        text = str(value).strip()
        try:
            eps = int(text)
        except ValueError:
            raise EpsilonError(
                f"epsilon must be an integer in 0..{MAX_EPSILON} (0-255 pixel units), got {value!r}"
            ) from None
    if not 0 <= eps <= MAX_EPSILON:
        raise EpsilonError(f"epsilon must be in 0..{MAX_EPSILON} (0-255 pixel units), got {eps}")
    return eps


def decode_png(data: bytes, *, what: str = "image") -> np.ndarray:
    """Decode PNG bytes into an RGB uint8 array.

    Args:
        data: The file's bytes.
        what: How to name the image in error messages.

    Returns:
        Array of shape (H, W, 3), dtype uint8, values 0–255.

    Raises:
        ImageError: If the bytes are not a PNG or not 8-bit RGB.
    """
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 24 and data[24] != 8:
        raise ImageError(f"{what}: {data[24]}-bit PNG, expected 8-bit RGB")
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format != "PNG":
                raise ImageError(f"{what}: not a PNG file (format {img.format})")
            if img.mode != IMAGE_MODE:
                raise ImageError(f"{what}: mode {img.mode}, expected {IMAGE_MODE} (8-bit, 3 channels)")
            array = np.asarray(img, dtype=np.uint8)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{what}: unreadable PNG (not an image file)") from None
    except Exception as exc:  # Pillow raises many types for corrupt files
        raise ImageError(f"{what}: unreadable PNG ({type(exc).__name__}: {exc})") from None
    if array.ndim != 3 or array.shape[2] != 3:
        raise ImageError(f"{what}: decoded to shape {array.shape}, expected (H, W, 3)")
    return array


#: Pillow modes an attack output may have besides RGB: every NIPS 2017 tool read outputs with
#: ``Image.open(f).convert("RGB")``, so these are converted exactly as Pillow does (alpha dropped, grey
#: replicated, palette looked up) and the conversion is recorded as a note, not a substitution.
CONVERTIBLE_MODES = ("RGBA", "LA", "L", "P", "PA", "1", "RGBX", "CMYK", "YCbCr")


def decode_output_png(data: bytes, *, what: str = "image") -> tuple[np.ndarray, str]:
    """Decode an attack's output PNG into RGB uint8, converting the 8-bit modes NIPS 2017 tools accepted.

    Args:
        data: The file's bytes.
        what: How to name the image in error messages.

    Returns:
        ``(array, note)``: array of shape (H, W, 3), dtype uint8, values 0–255, equal to Pillow's
        ``.convert("RGB")`` of the file; ``note`` is "" for an RGB file, else e.g. ``"mode RGBA converted to RGB
        (as PIL's convert('RGB'))"``.

    Raises:
        ImageError: If the bytes are not a PNG, hold 16-bit samples, or a mode outside
            :data:`CONVERTIBLE_MODES` (e.g. 32-bit integer ``I``).
    """
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 24 and data[24] > 8:
        raise ImageError(f"{what}: {data[24]}-bit PNG, expected 8-bit RGB")
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format != "PNG":
                raise ImageError(f"{what}: not a PNG file (format {img.format})")
            mode = img.mode
            if mode == IMAGE_MODE:
                array = np.asarray(img, dtype=np.uint8)
            elif mode in CONVERTIBLE_MODES:
                array = np.asarray(img.convert(IMAGE_MODE), dtype=np.uint8)
            else:
                raise ImageError(f"{what}: mode {mode}, expected {IMAGE_MODE} (8-bit, 3 channels) or one of "
                                 f"{', '.join(CONVERTIBLE_MODES)}")
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{what}: unreadable PNG (not an image file)") from None
    except Exception as exc:  # Pillow raises many types for corrupt files
        raise ImageError(f"{what}: unreadable PNG ({type(exc).__name__}: {exc})") from None
    if array.ndim != 3 or array.shape[2] != 3:
        raise ImageError(f"{what}: decoded to shape {array.shape}, expected (H, W, 3)")
    note = "" if mode == IMAGE_MODE else f"mode {mode} converted to RGB (as PIL's convert('RGB'))"
    return array, note


def read_png(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a competition image.

    Args:
        path: A PNG file.

    Returns:
        Array of shape (H, W, 3), dtype uint8.

    Raises:
        ImageError: If the file is missing, unreadable or not 8-bit RGB.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return decode_png(data, what=str(path))


def encode_png(image: np.ndarray) -> bytes:
    """Encode an RGB uint8 array as PNG bytes (deterministic: no metadata, fast fixed compression level 1).

    Args:
        image: Array of shape (H, W, 3), dtype uint8.

    Returns:
        The PNG file's bytes.
    """
    check_image_array(image)
    buffer = io.BytesIO()
    Image.fromarray(image, mode=IMAGE_MODE).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def write_png(path: str | os.PathLike[str], image: np.ndarray) -> None:
    """Write an RGB uint8 array as a PNG file (atomically: a reader never sees half a file).

    Args:
        path: Destination file.
        image: Array of shape (H, W, 3), dtype uint8.
    """
    path = Path(path)
    data = encode_png(image)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def check_image_array(image: np.ndarray) -> None:
    """Raise ImageError unless ``image`` is an (H, W, 3) uint8 array."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ImageError(f"expected a uint8 numpy array, got {type(image).__name__} "
                         f"{getattr(image, 'dtype', '')}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ImageError(f"expected shape (H, W, 3), got {image.shape}")


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def pixel_hash(image: np.ndarray) -> str:
    """Identity of an image's pixels: SHA-256 over its shape and uint8 bytes (independent of PNG encoding)."""
    check_image_array(image)
    digest = hashlib.sha256(f"{image.shape[0]}x{image.shape[1]}x{image.shape[2]}:".encode())
    digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()


#: Largest 8-bit pixel value: a value v in 0–255 units is v / PIXEL_MAX on the [0, 1] scale.
PIXEL_MAX = 255


def to_float(images: np.ndarray, *, dtype: type[np.floating] = np.float32) -> np.ndarray:
    """uint8 0–255 → float in [0, 1] (same shape; float32 unless ``dtype`` says otherwise)."""
    return np.asarray(images).astype(dtype) / float(PIXEL_MAX)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """float in [0, 1] → uint8 0–255 by rounding to nearest (values outside are clipped; same shape)."""
    return np.clip(np.rint(np.asarray(images, dtype=np.float64) * float(PIXEL_MAX)), 0, PIXEL_MAX).astype(np.uint8)


def pixels_to_unit(values: _Scalable) -> _Scalable:
    """0–255 units → the [0, 1] scale (v / 255) for a number, a NumPy array or a float torch tensor (any type
    with ``/``; a tensor stays on its device). ε and step sizes in pixel units (``8`` → 8/255)."""
    scaled: _Scalable = values / float(PIXEL_MAX)
    return scaled


def unit_to_pixels(values: _Scalable) -> _Scalable:
    """The [0, 1] scale → 0–255 units (v · 255), the inverse of :func:`pixels_to_unit` (no rounding)."""
    scaled: _Scalable = values * float(PIXEL_MAX)
    return scaled


def epsilon_to_unit(epsilon: int) -> float:
    """Integer ε in 0–255 units → ε on the [0, 1] scale (ε / 255)."""
    return pixels_to_unit(float(parse_epsilon(epsilon)))


def epsilon_ball(clean: np.ndarray, epsilon: int) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of the L∞ ball allowed around a clean image.

    Args:
        clean: uint8 array, any shape.
        epsilon: Integer budget 0–255.

    Returns:
        ``(low, high)`` uint8 arrays of ``clean``'s shape:
        ``low = clip(clean − ε, 0, 255)``, ``high = clip(clean + ε, 0, 255)``.
    """
    eps = parse_epsilon(epsilon)
    wide = clean.astype(np.int16)
    low = np.clip(wide - eps, 0, 255).astype(np.uint8)
    high = np.clip(wide + eps, 0, 255).astype(np.uint8)
    return low, high


@dataclass(frozen=True)
class ClipResult:
    """An adversarial image after clipping to the ε-ball.

    Attributes:
        image: The clipped image, uint8 (H, W, 3).
        clipped_values: How many channel values lay outside the ball and were moved onto it.
        max_violation: Largest distance (0–255 units) of a value outside the ball; 0 when none.
        linf: L∞ distance of the clipped image to the clean one (≤ ε).
    """

    image: np.ndarray
    clipped_values: int
    max_violation: int
    linf: int


def clip_to_ball(adversarial: np.ndarray, clean: np.ndarray, epsilon: int) -> ClipResult:
    """Project an adversarial image onto the ε-ball around the clean image.

    Args:
        adversarial: uint8 (H, W, 3) image produced by an attack.
        clean: uint8 (H, W, 3) original image of the same shape.
        epsilon: Integer budget 0–255.

    Returns:
        A :class:`ClipResult`; ``image`` satisfies ``|image − clean| ≤ ε`` everywhere.

    Raises:
        ImageError: If the shapes or dtypes differ.
    """
    check_image_array(adversarial)
    check_image_array(clean)
    if adversarial.shape != clean.shape:
        raise ImageError(f"size {adversarial.shape[1]}x{adversarial.shape[0]}, expected "
                         f"{clean.shape[1]}x{clean.shape[0]}")
    low, high = epsilon_ball(clean, epsilon)
    clipped = np.clip(adversarial, low, high)
    wide = adversarial.astype(np.int16)
    violation = np.maximum(low.astype(np.int16) - wide, wide - high.astype(np.int16))
    over = violation > 0
    linf = int(np.abs(clipped.astype(np.int16) - clean.astype(np.int16)).max(initial=0))
    return ClipResult(
        image=clipped,
        clipped_values=int(over.sum()),
        max_violation=int(violation.max(initial=0)) if over.any() else 0,
        linf=linf,
    )


@dataclass(frozen=True)
class RefereeResult:
    """What the referee made of one expected attack output.

    Attributes:
        image: The image defenses will see: the clipped output, or the clean image when ``problem`` is set.
        problem: Empty when the output was usable; otherwise why the clean image was substituted.
        note: "" or a remark on a usable output (e.g. its mode was converted to RGB).
        clipped_values: Channel values moved back onto the ε-ball (0 when substituted).
        max_violation: Largest violation in 0–255 units (0 when substituted).
        linf: L∞ distance of ``image`` to the clean image.
    """

    image: np.ndarray
    problem: str
    clipped_values: int
    max_violation: int
    linf: int
    note: str = ""


def referee(output_path: Path, clean: np.ndarray, epsilon: int) -> RefereeResult:
    """Turn one attack output file into the image defenses will classify.

    Missing, unreadable (not a PNG, 16-bit, unknown mode) and wrong-size outputs are replaced by the clean image
    with the reason recorded; RGBA, LA, L, P … outputs are converted as Pillow's ``.convert("RGB")`` does (as
    every NIPS 2017 tool read them) with a note; usable outputs are clipped to the ε-ball. Symlinks are never
    followed.

    Args:
        output_path: Where the attack should have written ``<ImageId>.png``.
        clean: The clean uint8 (H, W, 3) image.
        epsilon: Integer budget 0–255.

    Returns:
        A :class:`RefereeResult`.
    """
    def substitute(reason: str) -> RefereeResult:
        return RefereeResult(image=clean, problem=reason, clipped_values=0, max_violation=0, linf=0)

    if output_path.is_symlink():
        return substitute("output is a symbolic link")
    if not output_path.exists():
        return substitute("missing output image")
    if not output_path.is_file():
        return substitute("output is not a regular file")
    try:
        adversarial, note = decode_output_png(output_path.read_bytes(), what=output_path.name)
    except (ImageError, OSError) as exc:
        return substitute(str(exc).replace(f"{output_path.name}: ", "", 1))
    if adversarial.shape != clean.shape:
        return substitute(f"wrong size {adversarial.shape[1]}x{adversarial.shape[0]}, expected "
                          f"{clean.shape[1]}x{clean.shape[0]}")
    result = clip_to_ball(adversarial, clean, epsilon)
    return RefereeResult(image=result.image, problem="", clipped_values=result.clipped_values,
                         max_violation=result.max_violation, linf=result.linf, note=note)
