"""Pictures as users have them: formats, modes, orientation, bad files, limits, and what the model is shown."""

import functools
import io
import operator
import os
import re
import struct
import subprocess
import sys

import numpy as np
import pillow_heif
import pytest
from PIL import EpsImagePlugin, Image, features

from fashionclf import preprocess
from fashionclf.errors import FashionClfError
from fashionclf.preprocess import (
    REACHED_AGAIN,
    Frame,
    InputFormat,
    image_files,
    list_preprocessings,
    open_image,
    preprocessing_entry,
    read_header,
    register_preprocessing,
    to_dataset_domain,
)

from pictures import bad_inputs, encode, garment_on_white


def test_a_light_background_is_inverted_and_the_object_fills_the_frame():
    model_input = to_dataset_domain(garment_on_white())
    assert model_input.shape == (1, 28, 28) and model_input.dtype == np.uint8
    seen = model_input[0]
    assert seen[0, 0] == 0 and seen[14, 14] > 200  # black background, light garment
    rows = np.flatnonzero((seen > 30).any(axis=1))
    assert rows[0] <= 1 and rows[-1] >= 26  # the tall side spans the frame, as in Fashion-MNIST
    cols = np.flatnonzero((seen > 30).any(axis=0))
    assert 8 <= cols[0] and cols[-1] <= 19  # the aspect ratio is kept: 100 wide, 280 tall


def test_a_dataset_like_input_passes_unchanged():
    pixels = np.zeros((28, 28), dtype=np.uint8)
    pixels[3:25, 9:19] = np.arange(10, 230, 10, dtype=np.uint8)[:, None]
    assert np.array_equal(to_dataset_domain(Image.fromarray(pixels)), pixels[None])


@pytest.mark.parametrize(
    "variant",
    [
        "png", "jpeg", "webp", "heic",
        pytest.param("avif", marks=pytest.mark.skipif(not features.check("avif"), reason="this Pillow has no AVIF")),
        "bmp", "gif", "rgb", "cmyk", "palette", "rgba", "gray16",
    ],
)  # fmt: skip
def test_every_format_and_mode_gives_the_same_picture(variant):
    base = garment_on_white()
    reference = to_dataset_domain(base)
    image, fmt = {
        "png": (base, "PNG"),
        "jpeg": (base, "JPEG"),
        "webp": (base, "WEBP"),
        "heic": (base, "HEIF"),
        "avif": (base, "AVIF"),
        "bmp": (base, "BMP"),
        "gif": (base, "GIF"),
        "rgb": (base.convert("RGB"), "PNG"),
        "cmyk": (base.convert("CMYK"), "JPEG"),
        "palette": (base.convert("P"), "PNG"),
        "rgba": (base.convert("RGBA"), "PNG"),
        "gray16": (Image.fromarray(np.asarray(base).astype(np.uint16) * 257), "PNG"),
    }[variant]
    decoded = to_dataset_domain(open_image(encode(image, fmt), f"x.{variant}"))
    assert np.abs(decoded.astype(int) - reference.astype(int)).mean() < 6


@pytest.mark.parametrize(
    ("levels", "scale"), [("float in [0, 1]", 1 / 255), ("float in [0, 255]", 1), ("16-bit", 257), ("32-bit", 257)]
)
@pytest.mark.parametrize("preprocessing", ["fashion-mnist", "garment", "photo"])
def test_float_and_16_bit_pictures_are_read_by_their_levels(levels, scale, preprocessing):
    """A float TIFF in [0, 1] reached the model as a black picture, a 16-bit one a white picture for photo models."""
    eight_bit = garment_on_white()
    values = np.asarray(eight_bit).astype(np.float32 if levels.startswith("float") else np.int32) * scale
    twin = open_image(encode(Image.fromarray(values.astype(np.uint16) if levels == "16-bit" else values), "TIFF"), "x")
    assert twin.mode == "F"
    format = InputFormat(preprocessing, 3, 32) if preprocessing == "photo" else InputFormat(preprocessing)
    assert np.array_equal(format.prepare(twin), format.prepare(eight_bit))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (np.full((20, 20), -0.5, np.float32), "pixel values from -0.5 to -0.5, in no range of levels ([0, 1], "),
        (np.full((20, 20), 7e4, np.float32), "pixel values from 70000 to 70000, in no range of levels ([0, 1], [0, "),
        (np.full((20, 20), np.nan, np.float32), "pixel values that are not numbers (NaN or infinite)"),
        (np.full((20, 20), 70_000, np.int32), "pixel values from 70000 to 70000, in no range of levels ([0, 255], "),
    ],
)
def test_levels_that_fit_no_range_are_refused(values, message):
    with pytest.raises(FashionClfError, match=f"^odd.tif: {re.escape(message)}"):
        open_image(encode(Image.fromarray(values), "TIFF"), "odd.tif")


def test_transparency_counts_as_a_white_background():
    pixels = np.zeros((200, 200, 4), dtype=np.uint8)
    pixels[40:160, 70:130] = (30, 30, 30, 255)  # an opaque dark garment; the rest fully transparent
    seen = to_dataset_domain(open_image(encode(Image.fromarray(pixels, "RGBA"), "PNG"), "cutout.png"))[0]
    assert seen[0, 0] == 0 and seen[14, 14] > 200


def test_exif_orientation_is_applied():
    upright = garment_on_white()
    sideways = upright.rotate(90, expand=True)  # stored sideways, EXIF says rotate back
    exif = Image.Exif()
    exif[0x0112] = 8
    decoded = to_dataset_domain(open_image(encode(sideways, "JPEG", exif=exif), "photo.jpg"))
    assert np.abs(decoded.astype(int) - to_dataset_domain(upright).astype(int)).mean() < 6


def test_a_heic_photo_is_turned_upright_and_pillow_is_left_as_it_was(tmp_path):
    """iPhones take HEIC photos, sideways with an orientation to apply, as here; Pillow reads no HEIF itself, and
    fashionclf decodes it without registering pillow-heif's reader in Pillow."""
    upright = garment_on_white()
    exif = Image.Exif()
    exif[0x0112] = 8
    path = tmp_path / "IMG_0001.HEIC"
    path.write_bytes(encode(upright.rotate(90, expand=True), "HEIF", exif=exif.tobytes()))
    assert read_header(path, path.name) == 300 * 400
    decoded = to_dataset_domain(open_image(path, path.name))
    assert np.abs(decoded.astype(int) - to_dataset_domain(upright).astype(int)).mean() < 6
    assert "HEIF" not in Image.ID


def test_a_heif_file_of_several_images_gives_its_primary_one_the_photo():
    several = pillow_heif.from_pillow(Image.new("RGB", (400, 400), "red"))  # image 0: not the photo
    several.add_from_pillow(Image.new("RGB", (100, 120), "blue"))
    buffer = io.BytesIO()
    several.save(buffer, primary_index=1)
    decoded = open_image(buffer.getvalue(), "burst.heic")
    assert decoded.size == (100, 120) and decoded.getpixel((50, 60))[2] > 200


def test_a_heic_file_over_its_size_limit_is_refused_before_it_is_read(tmp_path, monkeypatch):
    heic = encode(garment_on_white(), "HEIF")
    monkeypatch.setattr(preprocess, "MAX_HEIF_BYTES", len(heic) - 1)  # pillow-heif would read it whole
    message = f"^big.heic: HEIF file of {len(heic):,} bytes, over the limit of {len(heic) - 1:,}$"
    with pytest.raises(FashionClfError, match=message):
        open_image(heic, "big.heic")


def test_the_content_decides_the_format_not_the_extension(tmp_path):
    path = tmp_path / "actually-a-jpeg.png"
    path.write_bytes(encode(garment_on_white(), "JPEG"))
    assert to_dataset_domain(open_image(path, str(path))).shape == (1, 28, 28)


@pytest.mark.parametrize("name", list(bad_inputs()))
def test_bad_images_are_refused_with_their_name(name):
    content, message = bad_inputs()[name]
    with pytest.raises(FashionClfError, match=f"^{name}: .*{message}"):
        open_image(content, name)


def test_formats_pillow_cannot_decode_here_are_named_as_not_supported(monkeypatch):
    """EPS said "truncated or corrupt image (Unable to locate Ghostscript on paths)", as if the file were damaged."""
    monkeypatch.setattr(EpsImagePlugin, "has_ghostscript", lambda: False)  # as where Ghostscript is not installed
    eps = encode(garment_on_white(), "EPS")
    with pytest.raises(FashionClfError, match=re.escape("a.eps: format not supported (EPS, which Pillow draws with "
                                                        "Ghostscript, not installed here)")):  # fmt: skip
        open_image(eps, "a.eps")
    header = struct.pack("<LHhhhhHL", 0x9AC6CDD7, 0, 0, 0, 1000, 1000, 1440, 0)  # a placeable Windows metafile
    checksum = functools.reduce(operator.xor, struct.unpack("<10H", header))
    wmf = header + struct.pack("<H", checksum) + b"\x01\x00\x09\x00\x00\x03" + bytes(40)
    with pytest.raises(FashionClfError, match=re.escape("a.wmf: format not supported (WMF, which Pillow recognises")):
        open_image(wmf, "a.wmf")


def test_missing_paths_and_empty_folders_are_reported(tmp_path):
    (tmp_path / "empty").mkdir()
    files, problems = image_files([tmp_path / "nope.png", tmp_path / "empty"])
    assert files == []
    assert problems == [
        (str(tmp_path / "nope.png"), "file does not exist"),
        (str(tmp_path / "empty"), "folder holds no files"),
    ]


def test_special_files_and_links_are_listed_with_their_reason_and_links_followed(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "linked.png").write_bytes(b"x")
    folder = tmp_path / "pictures"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.png").write_bytes(b"x")
    (folder / "sub" / "b.png").write_bytes(b"x")
    os.mkfifo(folder / "pipe.png")
    (folder / "outside").symlink_to(outside)  # a folder of the user's elsewhere: followed
    (folder / "again").symlink_to(folder / "sub")  # the same folder twice: its files would count twice
    (folder / "sub" / "loop").symlink_to(folder)
    (folder / "gone.png").symlink_to(tmp_path / "deleted.png")
    os.mkfifo(tmp_path / "fifo")
    files, problems = image_files([folder, tmp_path / "fifo", "/dev/null"])
    assert files == [folder / "a.png", folder / "outside" / "linked.png", folder / "sub" / "b.png"]
    assert problems == [
        (str(folder / "again"), REACHED_AGAIN),
        (str(folder / "gone.png"), f"broken symbolic link (to {tmp_path / 'deleted.png'})"),
        (str(folder / "pipe.png"), "not a regular file (a FIFO)"),
        (str(folder / "sub" / "loop"), REACHED_AGAIN),
        (str(tmp_path / "fifo"), "not a regular file (a FIFO)"),
        ("/dev/null", "not a regular file (a character device)"),
    ]


def test_a_header_is_read_without_decoding_the_pixels():
    assert read_header(encode(garment_on_white(), "PNG"), "a.png") == 300 * 400
    with pytest.raises(FashionClfError, match="strip.png: image is 6250000x8, an aspect ratio over 20:1"):
        read_header(bad_inputs()["strip.png"][0], "strip.png")


# VmHWM, not getrusage: ru_maxrss survives exec, so a child of pytest would report pytest's own size.
PEAK_MEMORY = """
import re, sys
from pathlib import Path
from fashionclf.preprocess import open_image, to_dataset_domain
seen = to_dataset_domain(open_image(Path(sys.argv[1]), sys.argv[1]))
status = Path("/proc/self/status").read_text()
print(seen.shape, int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1)) // 1024)
"""


def test_a_large_picture_under_the_limit_is_read_in_bounded_memory(tmp_path):
    """20000x2500 pixels, 50 megapixels in a PNG of a few dozen KB: the decoded picture is the peak, never a float
    copy of it or a padded canvas around it (which took 4.4 GB)."""
    pixels = np.full((2_500, 20_000), 235, dtype=np.uint8)
    pixels[500:2_000, 9_000:11_000] = 30
    path = tmp_path / "wide.png"
    Image.fromarray(pixels).save(path)
    del pixels
    result = subprocess.run([sys.executable, "-c", PEAK_MEMORY, str(path)], capture_output=True, text=True,
                            timeout=120, check=True)  # fmt: skip
    shape, peak_mb = result.stdout.rsplit(maxsplit=1)
    assert shape == "(1, 28, 28)"
    assert int(peak_mb) < 250, f"peak resident memory {peak_mb} MB"


def test_the_object_of_a_large_picture_is_found_as_in_a_small_one():
    small = garment_on_white()
    large = small.resize((small.width * 8, small.height * 8), Image.Resampling.NEAREST)
    difference = to_dataset_domain(large).astype(int) - to_dataset_domain(small).astype(int)
    assert np.abs(difference).mean() < 3


@pytest.fixture
def own_preprocessings(monkeypatch):
    """Preprocessings registered in a test are gone after it."""
    monkeypatch.setattr(preprocess, "_PREPROCESSINGS", dict(preprocess._PREPROCESSINGS))


def test_a_registered_preprocessing_is_usable_by_name_and_listed(own_preprocessings):
    @register_preprocessing("negative", channels=1, sides=(28,), domain="fashion-mnist")
    def negative(image: Image.Image, side: int) -> np.ndarray:
        """Fashion-MNIST's input with its levels inverted."""
        return 255 - to_dataset_domain(image, side)

    assert list_preprocessings() == ["fashion-mnist", "garment", "negative", "photo"]
    assert list_preprocessings("fashion-mnist") == ["fashion-mnist", "garment", "negative"]
    assert preprocessing_entry("negative").description == "Fashion-MNIST's input with its levels inverted."
    chosen = InputFormat().using("negative")  # a Fashion-MNIST model takes it, as it takes garment
    assert chosen == InputFormat("negative") and chosen.domain == "fashion-mnist"
    picture = garment_on_white()
    assert np.array_equal(chosen.prepare(picture), 255 - InputFormat().prepare(picture))
    with pytest.raises(FashionClfError, match="^--preprocessing photo: this model's input is reached by fashion-mnist, "
                       "garment, negative$"):  # fmt: skip
        InputFormat().using("photo")
    with pytest.raises(FashionClfError, match="^negative preprocessing cannot give 32x32 grayscale input$"):
        InputFormat("negative", 1, 32)
    with pytest.raises(FashionClfError, match="^unknown preprocessing 'sepia'; known: fashion-mnist, garment, "
                       "negative, photo$"):  # fmt: skip
        InputFormat("sepia")
    with pytest.raises(ValueError, match="'negative' is registered twice"):
        register_preprocessing("negative", channels=1, sides=(28,))(negative)


def test_a_preprocessing_of_its_own_domain_is_not_offered_to_other_models(own_preprocessings):
    @register_preprocessing("edges", channels=1, sides=range(8, 65))
    def edges(image: Image.Image, side: int) -> np.ndarray:
        """The picture's edges."""
        return np.zeros((1, side, side), np.uint8)

    assert InputFormat("edges", 1, 40).domain == "edges"
    with pytest.raises(FashionClfError, match="^--preprocessing edges: this model's input is reached by "
                       "fashion-mnist, garment$"):  # fmt: skip
        InputFormat().using("edges")


def test_each_preprocessing_says_which_square_of_the_picture_its_input_shows():
    """The square heat maps are drawn into on the user's picture: around the object, or the whole picture."""
    tall = garment_on_white(size=(300, 400), box=(100, 60, 200, 340))  # 100 wide, 280 tall
    array, frame = InputFormat("fashion-mnist").prepare_framed(tall)
    assert frame == Frame(10, 60, 280) and np.array_equal(array, to_dataset_domain(tall))
    in_domain = Image.fromarray(np.zeros((28, 28), np.uint8))
    assert InputFormat("fashion-mnist").prepare_framed(in_domain)[1] == Frame(0, 0, 28)
    assert InputFormat("photo", 3, 96).prepare_framed(tall)[1] == Frame(-50, 0, 400)
