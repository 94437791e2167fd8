"""read_image / write_image: RGB order, bit depths, channel counts, atomic output and errors."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from motion.image_io import read_image, write_image
from motion4d.errors import InputFileError, InvalidArgumentError, MissingFileError, ShapeError


@pytest.fixture
def image(rng) -> np.ndarray:
    return rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)


def test_png_round_trip_is_exact_and_rgb(tmp_path, image):
    path = write_image(tmp_path / "sub" / "a.png", image)
    assert path.exists() and list(path.parent.iterdir()) == [path]
    back = read_image(path)
    assert back.dtype == np.uint8 and back.flags.c_contiguous
    np.testing.assert_array_equal(back, image)
    # OpenCV itself sees BGR on disk: the channel swap happens exactly once.
    np.testing.assert_array_equal(cv2.imread(str(path))[..., ::-1], image)


def test_jpeg_quality(tmp_path, image):
    smooth = cv2.GaussianBlur(image, (0, 0), 2)
    good = read_image(write_image(tmp_path / "good.jpg", smooth, jpeg_quality=98))
    poor = read_image(write_image(tmp_path / "poor.jpeg", smooth, jpeg_quality=10))
    good_error = np.abs(good.astype(int) - smooth).mean()
    assert good_error < 3.0
    assert np.abs(poor.astype(int) - smooth).mean() > good_error


def test_grayscale_alpha_and_16_bit_inputs(tmp_path, image):
    gray = image[..., 0]
    assert cv2.imwrite(str(tmp_path / "gray.png"), gray)
    np.testing.assert_array_equal(read_image(tmp_path / "gray.png"), np.repeat(gray[..., None], 3, axis=2))
    bgra = np.dstack([image[..., ::-1], np.full(gray.shape, 7, np.uint8)])
    assert cv2.imwrite(str(tmp_path / "rgba.png"), bgra)
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png"), image)
    deep = (image.astype(np.int64) * 257 + (image < 255) * 100).astype(np.uint16)  # v as 257 v + 100
    assert cv2.imwrite(str(tmp_path / "deep.png"), deep[..., ::-1])
    np.testing.assert_array_equal(read_image(tmp_path / "deep.png"), image)
    write_image(tmp_path / "gray_out.png", gray)
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "gray_out.png"), cv2.IMREAD_UNCHANGED), gray)


def test_read_errors(tmp_path):
    with pytest.raises(MissingFileError, match="missing.png"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n not really")
    with pytest.raises(InputFileError, match="bad.png is not a readable image"):
        read_image(tmp_path / "bad.png")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(InputFileError, match="empty.jpg"):
        read_image(tmp_path / "empty.jpg")
    with pytest.raises(InputFileError, match="is a folder"):
        read_image(tmp_path)


def test_write_errors(tmp_path, image):
    with pytest.raises(InvalidArgumentError, match=".gif"):
        write_image(tmp_path / "a.gif", image)
    with pytest.raises(ShapeError, match="uint8"):
        write_image(tmp_path / "a.png", image.astype(np.float32))
    with pytest.raises(ShapeError, match=r"\[H, W, 3\]"):
        write_image(tmp_path / "a.png", image[..., :2])
    with pytest.raises(ShapeError):
        write_image(tmp_path / "a.png", image[:0])
    with pytest.raises(ShapeError):
        write_image(tmp_path / "a.png", image.tolist())
    with pytest.raises(InvalidArgumentError, match="jpeg_quality"):
        write_image(tmp_path / "a.jpg", image, jpeg_quality=0)
    assert list(tmp_path.iterdir()) == []
