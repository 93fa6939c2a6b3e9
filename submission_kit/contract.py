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
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image, PngImagePlugin

from submission_kit.messages import one_line

_Scalable = TypeVar("_Scalable", bound=Any)

#: The only pixel format the competition accepts: 8-bit RGB.
IMAGE_MODE = "RGB"
#: Largest value an integer ε may take (0–255 units).
MAX_EPSILON = 255
#: Largest image (width × height) the contract decodes: 16 Mpixel, far above any competition dataset.
MAX_PIXELS = 1 << 24
#: The eight bytes every PNG file starts with.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


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


def decode_png(data: bytes, *, what: str = "image", expected_size: tuple[int, int] | None = None,
               max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode PNG bytes into an RGB uint8 array.

    The header is read first (Pillow's PNG parser, without Pillow's decompression-bomb warning): the declared size
    is checked against ``expected_size`` and ``max_pixels``, and the mode and bit depth the decoder reports are
    checked, before any pixel is decoded.

    Args:
        data: The file's bytes.
        what: How to name the image in error messages.
        expected_size: (height, width) the image must have; None accepts any size up to ``max_pixels``.
        max_pixels: Largest width × height decoded.

    Returns:
        Array of shape (H, W, 3), dtype uint8, values 0–255.

    Raises:
        ImageError: If the bytes are not a PNG, not 8-bit RGB, of the wrong or too large a size (one-line message).
    """
    array, _ = _decode(data, what=what, expected_size=expected_size, max_pixels=max_pixels, convertible=False)
    return array


def _decode(data: bytes, *, what: str, expected_size: tuple[int, int] | None, max_pixels: int,
            convertible: bool) -> tuple[np.ndarray, str]:
    """Header checks, then decoding; see :func:`decode_png` and :func:`decode_output_png`."""
    if data[:8] != PNG_SIGNATURE:
        kind = _identify(data)
        raise ImageError(f"{what}: not a PNG file (format {kind})" if kind
                         else f"{what}: unreadable PNG (not an image file)")
    try:
        img = PngImagePlugin.PngImageFile(io.BytesIO(data))
    except Exception as exc:  # Pillow raises many types for corrupt headers
        raise ImageError(f"{what}: unreadable PNG ({one_line(f'{type(exc).__name__}: {exc}', limit=200)})") from None
    with img:
        width, height = img.size
        if expected_size is not None and (height, width) != tuple(expected_size):
            raise ImageError(f"{what}: wrong size {width}x{height}, expected {expected_size[1]}x{expected_size[0]}")
        if width * height > max_pixels:
            raise ImageError(f"{what}: declares {width}x{height} pixels, more than the {max_pixels} allowed")
        rawmode = _raw_mode(img) or ""
        if "16" in rawmode or img.mode.startswith("I;16"):
            raise ImageError(f"{what}: 16-bit PNG, expected 8-bit RGB")
        mode = img.mode
        if mode != IMAGE_MODE and not (convertible and mode in CONVERTIBLE_MODES):
            accepted = f" or one of {', '.join(CONVERTIBLE_MODES)}" if convertible else ""
            raise ImageError(f"{what}: mode {mode}, expected {IMAGE_MODE} (8-bit, 3 channels){accepted}")
        if mode == IMAGE_MODE and rawmode != IMAGE_MODE:
            raise ImageError(f"{what}: pixel layout {one_line(rawmode, limit=20)}, expected 8-bit RGB")
        if getattr(img, "n_frames", 1) != 1:
            raise ImageError(f"{what}: animated PNG ({img.n_frames} frames), expected one 8-bit RGB image")
        try:
            img.load()
            array = np.asarray(img if mode == IMAGE_MODE else img.convert(IMAGE_MODE), dtype=np.uint8)
        except Exception as exc:  # truncated or corrupt image data
            raise ImageError(f"{what}: unreadable PNG ({one_line(f'{type(exc).__name__}: {exc}', limit=200)})"
                             ) from None
    if array.ndim != 3 or array.shape[2] != 3:
        raise ImageError(f"{what}: decoded to shape {array.shape}, expected (H, W, 3)")
    note = "" if mode == IMAGE_MODE else f"mode {mode} converted to RGB (as PIL's convert('RGB'))"
    return array, note


def _raw_mode(img: PngImagePlugin.PngImageFile) -> str | None:
    """The pixel layout the PNG decoder will read (e.g. ``RGB``, ``RGB;16B``), from the parsed header."""
    if not img.tile:
        return None
    args = img.tile[0].args if hasattr(img.tile[0], "args") else img.tile[0][3]
    return args if isinstance(args, str) else (args[0] if args else None)


def _identify(data: bytes) -> str:
    """The image format Pillow recognises from the first bytes ("" when none); nothing is decoded."""
    Image.init()
    for name in Image.ID:
        accept = Image.OPEN[name][1]
        try:
            if accept is not None and accept(data[:16]):
                return name
        except Exception:
            continue
    return ""


#: Pillow modes an attack output may have besides RGB: every NIPS 2017 tool read outputs with
#: ``Image.open(f).convert("RGB")``, so these are converted exactly as Pillow does (alpha dropped, grey
#: replicated, palette looked up) and the conversion is recorded as a note, not a substitution.
CONVERTIBLE_MODES = ("RGBA", "LA", "L", "P", "PA", "1", "RGBX", "CMYK", "YCbCr")


def decode_output_png(data: bytes, *, what: str = "image", expected_size: tuple[int, int] | None = None
                      ) -> tuple[np.ndarray, str]:
    """Decode an attack's output PNG into RGB uint8, converting the 8-bit modes NIPS 2017 tools accepted.

    The same header checks as :func:`decode_png` come first (size, bit depth, frames); an 8-bit file in one of
    :data:`CONVERTIBLE_MODES` is then converted exactly as Pillow's ``.convert("RGB")`` does.

    Args:
        data: The file's bytes.
        what: How to name the image in error messages.
        expected_size: (height, width) the image must have; None accepts any size up to :data:`MAX_PIXELS`.

    Returns:
        ``(array, note)``: array of shape (H, W, 3), dtype uint8, values 0–255, equal to Pillow's
        ``.convert("RGB")`` of the file; ``note`` is "" for an RGB file, else e.g. ``"mode RGBA converted to RGB
        (as PIL's convert('RGB'))"``.

    Raises:
        ImageError: If the bytes are not a PNG, hold 16-bit samples, a mode outside :data:`CONVERTIBLE_MODES`
            (e.g. 32-bit integer ``I``), or have the wrong size (one-line message).
    """
    return _decode(data, what=what, expected_size=expected_size, max_pixels=MAX_PIXELS, convertible=True)


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


def _no_follow(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW)


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

    try:
        info = os.lstat(output_path)
    except FileNotFoundError:
        return substitute("missing output image")
    except OSError as exc:
        return substitute(f"output unreadable ({exc.strerror or exc})")
    if stat.S_ISLNK(info.st_mode):
        return substitute("output is a symbolic link")
    if not stat.S_ISREG(info.st_mode):
        return substitute("output is not a regular file")
    height, width = clean.shape[:2]
    largest = 2 * height * (3 * width + 1) + (64 << 10)  # stored (uncompressed) PNG plus room for chunks
    if info.st_size > largest:
        return substitute(f"output file of {info.st_size} bytes, larger than any {width}x{height} PNG needs "
                          f"({largest} bytes)")
    try:
        with open(output_path, "rb", opener=_no_follow) as handle:
            data = handle.read(largest + 1)
        adversarial, note = decode_output_png(data, what=output_path.name, expected_size=(height, width))
    except (ImageError, OSError) as exc:
        text = str(exc) if isinstance(exc, ImageError) else f"output unreadable ({exc.strerror or exc})"
        return substitute(text.replace(f"{output_path.name}: ", "", 1))
    result = clip_to_ball(adversarial, clean, epsilon)
    return RefereeResult(image=result.image, problem="", clipped_values=result.clipped_values,
                         max_violation=result.max_violation, linf=result.linf, note=note)


def visible_perturbation(adversarial: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """The perturbation ``adversarial − clean`` stretched to be seen (for reports; never scored).

    Args:
        adversarial: uint8 array (H, W, 3).
        clean: uint8 array of the same shape.

    Returns:
        uint8 array (H, W, 3): ``128 + δ · 127 / max(1, ‖δ‖∞)`` rounded, so zero change is mid-grey and the
        largest change per image reaches 1 or 255.

    Raises:
        ValueError: The shapes differ.
    """
    if adversarial.shape != clean.shape:
        raise ValueError(f"perturbation of images of different shapes: {adversarial.shape} vs {clean.shape}")
    delta = adversarial.astype(np.int16) - clean.astype(np.int16)
    scale = 127.0 / max(1, int(np.abs(delta).max(initial=0)))
    stretched: np.ndarray = np.clip(np.rint(128.0 + delta * scale), 0, 255).astype(np.uint8)
    return stretched
