"""Unit tests for submission_kit.contract: ε parsing, the L∞ ball, PNG I/O and the referee."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from submission_kit import contract
from submission_kit.contract import (
    ClipResult,
    EpsilonError,
    ImageError,
    clip_to_ball,
    decode_png,
    encode_png,
    epsilon_ball,
    epsilon_to_unit,
    parse_epsilon,
    pixel_hash,
    read_png,
    referee,
    to_float,
    to_uint8,
    write_png,
)

# -- helpers ----------------------------------------------------------------------------------------

def png_bytes(array: np.ndarray, *, mode: str | None = None, fmt: str = "PNG", **save_kwargs) -> bytes:
    """Encode an array with Pillow directly (independently of the code under test)."""
    image = Image.fromarray(array) if mode is None else Image.fromarray(array).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save_kwargs)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_rgb16(height: int, width: int) -> bytes:
    """A hand-built 16-bit-per-channel RGB PNG (Pillow cannot write one)."""
    row = b"\0" + bytes(range(6 * width))  # filter byte 0, then big-endian 16-bit samples
    return (b"\x89PNG\r\n\x1a\n"
            + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0))
            + png_chunk(b"IDAT", zlib.compress(row * height))
            + png_chunk(b"IEND", b""))


CLEAN = np.array([[[0, 128, 255], [10, 250, 3]]], dtype=np.uint8)  # shape (1, 2, 3)


# -- parse_epsilon ----------------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    (0, 0), (4, 4), (16, 16), (255, 255),
    ("16", 16), (" 4 ", 4), ("0", 0), ("255", 255), ("\t8\n", 8),
    (np.int64(8), 8), (np.uint8(255), 255),
])
def test_parse_epsilon_accepts_integers_in_range(value, expected):
    result = parse_epsilon(value)
    assert result == expected
    assert type(result) is int


@pytest.mark.parametrize("value", [-1, 256, 1000, "-1", "256", "1.5", "abc", "", "16.0", 16.0, 4.5, None,
                                   True, False, "0x10", [16]])
def test_parse_epsilon_rejects_with_range_in_message(value):
    with pytest.raises(EpsilonError) as info:
        parse_epsilon(value)
    assert "0..255" in str(info.value)


def test_parse_epsilon_out_of_range_message_names_the_value():
    with pytest.raises(EpsilonError, match=r"got 256"):
        parse_epsilon(256)
    with pytest.raises(EpsilonError, match=r"got -1"):
        parse_epsilon("-1")
    with pytest.raises(EpsilonError, match=r"got 'abc'"):
        parse_epsilon("abc")
    with pytest.raises(EpsilonError, match=r"got True"):
        parse_epsilon(True)


def test_epsilon_error_is_a_value_error():
    assert issubclass(EpsilonError, ValueError)
    assert issubclass(ImageError, ValueError)


def test_epsilon_to_unit():
    assert epsilon_to_unit(0) == 0.0
    assert epsilon_to_unit(255) == 1.0
    assert epsilon_to_unit("16") == pytest.approx(0.0627450980392, abs=1e-12)
    with pytest.raises(EpsilonError):
        epsilon_to_unit(256)


# -- epsilon_ball -----------------------------------------------------------------------------------

EDGE = np.array([0, 1, 2, 127, 253, 254, 255], dtype=np.uint8)


@pytest.mark.parametrize("eps, low, high", [
    (0, [0, 1, 2, 127, 253, 254, 255], [0, 1, 2, 127, 253, 254, 255]),
    (1, [0, 0, 1, 126, 252, 253, 254], [1, 2, 3, 128, 254, 255, 255]),
    (2, [0, 0, 0, 125, 251, 252, 253], [2, 3, 4, 129, 255, 255, 255]),
    (255, [0, 0, 0, 0, 0, 0, 0], [255, 255, 255, 255, 255, 255, 255]),
])
def test_epsilon_ball_hand_computed(eps, low, high):
    got_low, got_high = epsilon_ball(EDGE, eps)
    assert got_low.dtype == np.uint8 and got_high.dtype == np.uint8
    assert got_low.shape == EDGE.shape
    assert got_low.tolist() == low
    assert got_high.tolist() == high


def test_epsilon_ball_keeps_shape_and_validates_eps():
    clean = np.full((2, 3, 3), 7, dtype=np.uint8)
    low, high = epsilon_ball(clean, "4")
    assert low.shape == (2, 3, 3) and (low == 3).all() and (high == 11).all()
    with pytest.raises(EpsilonError):
        epsilon_ball(clean, 256)


# -- clip_to_ball -----------------------------------------------------------------------------------

def test_clip_to_ball_hand_computed():
    adversarial = np.array([[[9, 120, 240], [14, 255, 0]]], dtype=np.uint8)
    # ε = 4: low = [0,124,251],[6,246,0]; high = [4,132,255],[14,254,7]
    result = clip_to_ball(adversarial, CLEAN, 4)
    assert isinstance(result, ClipResult)
    assert result.image.dtype == np.uint8
    assert result.image.tolist() == [[[4, 124, 251], [14, 254, 0]]]
    assert result.clipped_values == 4   # 9, 120, 240, 255 were outside; 14 and 0 are on the bounds
    assert result.max_violation == 11   # 251 - 240
    assert result.linf == 4


def test_clip_to_ball_values_exactly_on_the_bounds_are_not_clipped():
    clean = np.array([[[10, 10, 10], [0, 255, 128]]], dtype=np.uint8)
    adversarial = np.array([[[6, 14, 10], [4, 251, 132]]], dtype=np.uint8)
    result = clip_to_ball(adversarial, clean, 4)
    assert result.clipped_values == 0
    assert result.max_violation == 0
    assert result.linf == 4
    assert np.array_equal(result.image, adversarial)


@pytest.mark.parametrize("clean_value, adv_value, eps, out, clipped, violation, linf", [
    (0, 255, 0, 0, 1, 255, 0),
    (255, 0, 0, 255, 1, 255, 0),
    (0, 0, 0, 0, 0, 0, 0),
    (0, 255, 1, 1, 1, 254, 1),
    (255, 0, 1, 254, 1, 254, 1),
    (0, 1, 1, 1, 0, 0, 1),
    (255, 254, 1, 254, 0, 0, 1),
    (0, 255, 255, 255, 0, 0, 255),
    (255, 0, 255, 0, 0, 0, 255),
    (128, 0, 127, 1, 1, 1, 127),
])
def test_clip_to_ball_uint8_edges(clean_value, adv_value, eps, out, clipped, violation, linf):
    clean = np.full((1, 1, 3), clean_value, dtype=np.uint8)
    adversarial = np.full((1, 1, 3), adv_value, dtype=np.uint8)
    result = clip_to_ball(adversarial, clean, eps)
    assert result.image.tolist() == [[[out, out, out]]]
    assert result.clipped_values == 3 * clipped
    assert result.max_violation == violation
    assert result.linf == linf


def test_clip_to_ball_does_not_modify_inputs():
    adversarial = np.array([[[9, 120, 240], [14, 255, 0]]], dtype=np.uint8)
    clean = CLEAN.copy()
    adv_before, clean_before = adversarial.copy(), clean.copy()
    adversarial.flags.writeable = False
    clean.flags.writeable = False
    result = clip_to_ball(adversarial, clean, 4)
    assert np.array_equal(adversarial, adv_before)
    assert np.array_equal(clean, clean_before)
    assert result.image is not adversarial and result.image is not clean


def test_clip_to_ball_rejects_mismatched_shapes_and_dtypes():
    clean = np.zeros((2, 2, 3), dtype=np.uint8)
    with pytest.raises(ImageError, match=r"size 3x2, expected 2x2"):
        clip_to_ball(np.zeros((2, 3, 3), dtype=np.uint8), clean, 4)
    with pytest.raises(ImageError, match=r"uint8"):
        clip_to_ball(np.zeros((2, 2, 3), dtype=np.float32), clean, 4)
    with pytest.raises(ImageError, match=r"\(H, W, 3\)"):
        clip_to_ball(np.zeros((2, 2, 4), dtype=np.uint8), np.zeros((2, 2, 4), dtype=np.uint8), 4)
    with pytest.raises(EpsilonError):
        clip_to_ball(clean, clean, -1)


@settings(max_examples=150, deadline=None, database=None)
@given(
    data=st.data(),
    shape=hnp.array_shapes(min_dims=3, max_dims=3, min_side=1, max_side=4).map(lambda s: (s[0], s[1], 3)),
    eps=st.integers(0, 255),
)
def test_clip_to_ball_property(data, shape, eps):
    clean = data.draw(hnp.arrays(np.uint8, shape))
    adversarial = data.draw(hnp.arrays(np.uint8, shape))
    result = clip_to_ball(adversarial, clean, eps)
    wide_clean = clean.astype(int)
    wide_adv = adversarial.astype(int)
    out = result.image.astype(int)
    assert result.image.dtype == np.uint8 and result.image.shape == shape
    assert (np.abs(out - wide_clean) <= eps).all()
    inside = np.abs(wide_adv - wide_clean) <= eps
    # values inside the ball are untouched, values outside land on the nearest bound
    assert (out[inside] == wide_adv[inside]).all()
    expected_outside = np.clip(wide_adv, np.maximum(wide_clean - eps, 0), np.minimum(wide_clean + eps, 255))
    assert (out == expected_outside).all()
    assert result.clipped_values == int((~inside).sum())
    expected_violation = int((np.abs(wide_adv - wide_clean) - eps)[~inside].max()) if (~inside).any() else 0
    assert result.max_violation == expected_violation
    assert result.linf == int(np.abs(out - wide_clean).max())
    assert result.linf <= eps


# -- PNG encode / decode ----------------------------------------------------------------------------

def test_encode_decode_round_trip_and_determinism():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    data = encode_png(image)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert encode_png(image) == data
    decoded = decode_png(data)
    assert decoded.dtype == np.uint8 and decoded.shape == (5, 7, 3)
    assert np.array_equal(decoded, image)


def test_encode_png_rejects_non_contract_arrays():
    with pytest.raises(ImageError, match="uint8"):
        encode_png(np.zeros((2, 2, 3), dtype=np.float32))
    with pytest.raises(ImageError, match=r"\(H, W, 3\)"):
        encode_png(np.zeros((2, 2), dtype=np.uint8))
    with pytest.raises(ImageError, match=r"\(H, W, 3\)"):
        encode_png(np.zeros((2, 2, 4), dtype=np.uint8))
    with pytest.raises(ImageError, match="list"):
        encode_png([[[0, 0, 0]]])


def test_decode_png_rejects_other_formats_and_modes():
    rgb = np.zeros((2, 2, 3), dtype=np.uint8)
    with pytest.raises(ImageError, match=r"^thing: not a PNG file \(format JPEG\)$"):
        decode_png(png_bytes(rgb, fmt="JPEG"), what="thing")
    with pytest.raises(ImageError, match=r"mode L, expected RGB"):
        decode_png(png_bytes(rgb, mode="L"))
    with pytest.raises(ImageError, match=r"mode RGBA, expected RGB"):
        decode_png(png_bytes(rgb, mode="RGBA"))
    with pytest.raises(ImageError, match=r"mode P, expected RGB"):
        decode_png(png_bytes(rgb, mode="P"))
    with pytest.raises(ImageError, match=r"16-bit PNG, expected 8-bit RGB"):
        decode_png(png_bytes(np.zeros((2, 2), dtype=np.uint16)))
    with pytest.raises(ImageError, match=r"^image: unreadable PNG"):
        decode_png(b"not an image at all")
    with pytest.raises(ImageError, match=r"unreadable PNG"):
        decode_png(png_bytes(rgb)[:40])
    with pytest.raises(ImageError, match=r"unreadable PNG"):
        decode_png(b"")


def test_decode_png_rejects_16_bit_rgb():
    data = png_rgb16(2, 2)  # Pillow reports this file as mode "RGB"
    with pytest.raises(ImageError, match="8-bit"):
        decode_png(data)


def test_write_png_read_png_round_trip_leaves_no_temp_file(tmp_path):
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    path = tmp_path / "x.png"
    write_png(path, image)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]
    assert np.array_equal(read_png(path), image)
    # overwrite in place
    write_png(path, 255 - image)
    assert np.array_equal(read_png(path), 255 - image)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]
    # the file is a plain PNG Pillow reads back identically
    with Image.open(path) as img:
        assert img.mode == "RGB" and np.array_equal(np.asarray(img), 255 - image)


def test_read_png_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nope.png"
    with pytest.raises(ImageError, match=r"nope\.png: cannot read"):
        read_png(path)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"xx")
    with pytest.raises(ImageError) as info:
        read_png(bad)
    assert str(info.value).startswith(f"{bad}: unreadable PNG")


# -- pixel_hash / float conversions -----------------------------------------------------------------

def test_pixel_hash_ignores_png_encoding_but_not_pixels():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
    fast = png_bytes(image, compress_level=0)
    small = png_bytes(image, compress_level=9)
    assert fast != small
    assert contract.sha256_bytes(fast) != contract.sha256_bytes(small)
    assert pixel_hash(decode_png(fast)) == pixel_hash(decode_png(small)) == pixel_hash(image)
    changed = image.copy()
    changed[5, 5, 2] ^= 1
    assert pixel_hash(changed) != pixel_hash(image)


def test_pixel_hash_value_and_shape_sensitivity():
    image = np.array([[[1, 2, 3], [4, 5, 6]]], dtype=np.uint8)
    assert pixel_hash(image) == hashlib.sha256(b"1x2x3:\x01\x02\x03\x04\x05\x06").hexdigest()
    assert pixel_hash(image.reshape(2, 1, 3)) != pixel_hash(image)
    # non-contiguous views hash like their contiguous copies
    wide = np.zeros((2, 4, 3), dtype=np.uint8)
    wide[:, ::2] = 9
    assert pixel_hash(wide[:, ::2]) == pixel_hash(np.full((2, 2, 3), 9, dtype=np.uint8))
    with pytest.raises(ImageError):
        pixel_hash(image.astype(np.int16))


def test_sha256_bytes():
    assert contract.sha256_bytes(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_to_float_to_uint8_round_trip_all_values():
    values = np.arange(256, dtype=np.uint8).reshape(1, 256, 1)
    floats = to_float(values)
    assert floats.dtype == np.float32 and floats.shape == (1, 256, 1)
    assert floats.min() == 0.0 and floats.max() == 1.0
    assert floats[0, 128, 0] == pytest.approx(128 / 255)
    back = to_uint8(floats)
    assert back.dtype == np.uint8
    assert np.array_equal(back, values)


def test_to_uint8_rounds_to_nearest_and_clips():
    floats = np.array([-0.5, 0.0, 0.4 / 255, 0.6 / 255, 1.4 / 255, 1.6 / 255, 0.999, 1.0, 1.7, np.inf])
    assert to_uint8(floats).tolist() == [0, 0, 0, 1, 1, 2, 255, 255, 255, 255]
    assert to_uint8(np.array([[0.5]])).shape == (1, 1)


# -- referee ----------------------------------------------------------------------------------------

CLEAN_2x3 = np.array([[[0, 128, 255], [10, 250, 3], [100, 100, 100]],
                      [[1, 2, 3], [254, 255, 0], [50, 60, 70]]], dtype=np.uint8)  # H=2, W=3


def assert_substituted(result, problem: str):
    assert result.problem == problem
    assert np.array_equal(result.image, CLEAN_2x3)
    assert (result.clipped_values, result.max_violation, result.linf) == (0, 0, 0)


def test_referee_missing_output(tmp_path):
    assert_substituted(referee(tmp_path / "a.png", CLEAN_2x3, 16), "missing output image")


def test_referee_symlink_is_never_followed(tmp_path):
    real = tmp_path / "real.png"
    real.write_bytes(png_bytes(CLEAN_2x3))
    link = tmp_path / "a.png"
    link.symlink_to(real)
    assert_substituted(referee(link, CLEAN_2x3, 16), "output is a symbolic link")
    dangling = tmp_path / "b.png"
    dangling.symlink_to(tmp_path / "nowhere.png")
    assert_substituted(referee(dangling, CLEAN_2x3, 16), "output is a symbolic link")


def test_referee_directory(tmp_path):
    (tmp_path / "a.png").mkdir()
    assert_substituted(referee(tmp_path / "a.png", CLEAN_2x3, 16), "output is not a regular file")


def test_referee_corrupt_bytes(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(b"\x89PNG garbage")
    result = referee(path, CLEAN_2x3, 16)
    assert result.problem.startswith("unreadable PNG (")
    assert "a.png" not in result.problem  # the file name prefix is stripped
    assert np.array_equal(result.image, CLEAN_2x3)
    assert (result.clipped_values, result.max_violation, result.linf) == (0, 0, 0)


def test_referee_problem_text_is_deterministic(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(b"garbage")
    problem = referee(path, CLEAN_2x3, 16).problem
    assert "0x" not in problem and "BytesIO" not in problem


def test_referee_empty_file(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(b"")
    result = referee(path, CLEAN_2x3, 16)
    assert result.problem.startswith("unreadable PNG")
    assert np.array_equal(result.image, CLEAN_2x3)


@pytest.mark.parametrize("mode, fmt, problem", [
    (None, "JPEG", "not a PNG file (format JPEG)"),
])  # L, RGBA, P … outputs are converted as NIPS 2017 tools did: tests/test_nips17_compat.py
def test_referee_wrong_format_or_mode(tmp_path, mode, fmt, problem):
    path = tmp_path / "a.png"
    path.write_bytes(png_bytes(CLEAN_2x3, mode=mode, fmt=fmt))
    assert_substituted(referee(path, CLEAN_2x3, 16), problem)


def test_referee_16_bit_grayscale(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(png_bytes(np.zeros((2, 3), dtype=np.uint16)))
    assert_substituted(referee(path, CLEAN_2x3, 16), "16-bit PNG, expected 8-bit RGB")


@pytest.mark.parametrize("shape, problem", [
    ((2, 4, 3), "wrong size 4x2, expected 3x2"),
    ((3, 2, 3), "wrong size 2x3, expected 3x2"),
    ((3, 3, 3), "wrong size 3x3, expected 3x2"),
])
def test_referee_wrong_size(tmp_path, shape, problem):
    path = tmp_path / "a.png"
    path.write_bytes(png_bytes(np.zeros(shape, dtype=np.uint8)))
    assert_substituted(referee(path, CLEAN_2x3, 16), problem)


def test_referee_good_file_is_clipped(tmp_path):
    adversarial = np.array([[[20, 100, 200], [10, 250, 3], [116, 84, 117]],
                            [[1, 2, 3], [238, 255, 16], [50, 60, 70]]], dtype=np.uint8)
    # ε = 16: 20→16 (4 over), 100→112 (12 over), 200→239 (39 over), 117→116 (1 over); the rest inside
    path = tmp_path / "a.png"
    path.write_bytes(png_bytes(adversarial))
    result = referee(path, CLEAN_2x3, 16)
    assert result.problem == ""
    assert result.image.tolist() == [[[16, 112, 239], [10, 250, 3], [116, 84, 116]],
                                     [[1, 2, 3], [238, 255, 16], [50, 60, 70]]]
    assert result.clipped_values == 4
    assert result.max_violation == 39
    assert result.linf == 16


def test_referee_identical_output_is_unchanged(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(png_bytes(CLEAN_2x3, compress_level=1))
    result = referee(path, CLEAN_2x3, 0)
    assert result.problem == ""
    assert np.array_equal(result.image, CLEAN_2x3)
    assert (result.clipped_values, result.max_violation, result.linf) == (0, 0, 0)


def test_referee_does_not_modify_clean(tmp_path):
    clean = CLEAN_2x3.copy()
    clean.flags.writeable = False
    path = tmp_path / "a.png"
    path.write_bytes(png_bytes(np.full((2, 3, 3), 255, dtype=np.uint8)))
    result = referee(path, clean, 8)
    assert np.array_equal(clean, CLEAN_2x3)
    assert result.clipped_values > 0
    assert (np.abs(result.image.astype(int) - CLEAN_2x3.astype(int)) <= 8).all()


def test_pixel_scale_conversions_are_the_contracts():
    from submission_kit.contract import PIXEL_MAX, epsilon_to_unit, pixels_to_unit, to_float, unit_to_pixels

    assert PIXEL_MAX == 255
    assert pixels_to_unit(8) == 8 / 255 and unit_to_pixels(8 / 255) == pytest.approx(8)
    assert epsilon_to_unit(16) == pixels_to_unit(16.0)
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=3)
    as64 = to_float(pixels, dtype=np.float64)
    assert as64.dtype == np.float64 and to_float(pixels).dtype == np.float32
    assert np.array_equal(as64, pixels.astype(np.float64) / 255.0)
    assert np.array_equal(pixels_to_unit(pixels.astype(np.float32)), to_float(pixels))
    assert np.array_equal(to_uint8(as64), pixels)
