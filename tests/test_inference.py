"""Pictures as users have them: formats, modes, orientation, bad files, and agreement with the model on the dataset."""

import io
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fashionclf.errors import FashionClfError
from fashionclf.inference import (
    Prediction,
    image_files,
    load_classifier,
    open_image,
    predict_files,
    to_dataset_domain,
)
from fashionclf.models import create_model
from fashionclf.rundir import CHECKPOINT_FORMAT, save_checkpoint


def garment_on_white(size=(300, 400), box=(100, 60, 200, 340), shade=40) -> Image.Image:
    """A dark, tall object on a light background: the opposite of Fashion-MNIST's look."""
    pixels = np.full((size[1], size[0]), 235, dtype=np.uint8)
    left, top, right, bottom = box
    pixels[top:bottom, left:right] = shade
    return Image.fromarray(pixels)


def test_a_light_background_is_inverted_and_the_object_fills_the_frame():
    seen = to_dataset_domain(garment_on_white())
    assert seen.shape == (28, 28) and seen.dtype == np.uint8
    assert seen[0, 0] == 0 and seen[14, 14] > 200  # black background, light garment
    rows = np.flatnonzero((seen > 30).any(axis=1))
    assert rows[0] <= 1 and rows[-1] >= 26  # the tall side spans the frame, as in Fashion-MNIST
    cols = np.flatnonzero((seen > 30).any(axis=0))
    assert 8 <= cols[0] and cols[-1] <= 19  # the aspect ratio is kept: 100 wide, 280 tall


def test_a_dataset_like_input_passes_unchanged():
    pixels = np.zeros((28, 28), dtype=np.uint8)
    pixels[3:25, 9:19] = np.arange(10, 230, 10, dtype=np.uint8)[:, None]
    assert np.array_equal(to_dataset_domain(Image.fromarray(pixels)), pixels)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "variant",
    ["png", "jpeg", "webp", "bmp", "gif", "rgb", "cmyk", "palette", "rgba", "gray16"],
)
def test_every_format_and_mode_gives_the_same_picture(variant):
    base = garment_on_white()
    reference = to_dataset_domain(base)
    image, fmt = {
        "png": (base, "PNG"),
        "jpeg": (base, "JPEG"),
        "webp": (base, "WEBP"),
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


def test_transparency_counts_as_a_white_background():
    pixels = np.zeros((200, 200, 4), dtype=np.uint8)
    pixels[40:160, 70:130] = (30, 30, 30, 255)  # an opaque dark garment; the rest fully transparent
    seen = to_dataset_domain(open_image(encode(Image.fromarray(pixels, "RGBA"), "PNG"), "cutout.png"))
    assert seen[0, 0] == 0 and seen[14, 14] > 200


def test_exif_orientation_is_applied():
    upright = garment_on_white()
    sideways = upright.rotate(90, expand=True)  # stored sideways, EXIF says rotate back
    exif = Image.Exif()
    exif[0x0112] = 8
    decoded = to_dataset_domain(open_image(encode(sideways, "JPEG", exif=exif), "photo.jpg"))
    assert np.abs(decoded.astype(int) - to_dataset_domain(upright).astype(int)).mean() < 6


def test_the_content_decides_the_format_not_the_extension(tmp_path):
    path = tmp_path / "actually-a-jpeg.png"
    path.write_bytes(encode(garment_on_white(), "JPEG"))
    assert to_dataset_domain(open_image(path, str(path))).shape == (28, 28)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares its size and holds no pixels: enough for Pillow to read the header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def bad_inputs() -> dict[str, tuple[bytes, str]]:
    png = encode(garment_on_white(), "PNG")
    jpeg = encode(garment_on_white(), "JPEG")
    return {
        "empty.png": (b"", "empty file"),
        "text.png": (b"just some words\n", "not an image"),
        "truncated.png": (png[: len(png) // 2], "truncated or corrupt"),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "truncated or corrupt"),
        "tiny.png": (encode(Image.new("L", (1, 1)), "PNG"), "1x1, too small"),
        "huge.png": (png_header_only(20_000, 20_000), "20000x20000 = 400,000,000 pixels, over the limit"),
    }


@pytest.mark.parametrize("name", list(bad_inputs()))
def test_bad_images_are_refused_with_their_name(name):
    content, message = bad_inputs()[name]
    with pytest.raises(FashionClfError, match=f"^{name}: .*{message}"):
        open_image(content, name)


def test_missing_paths_and_empty_folders_are_reported(tmp_path):
    (tmp_path / "empty").mkdir()
    files, problems = image_files([tmp_path / "nope.png", tmp_path / "empty"])
    assert files == []
    assert problems == [
        (str(tmp_path / "nope.png"), "file does not exist"),
        (str(tmp_path / "empty"), "folder holds no files"),
    ]


@pytest.fixture
def untrained_model(tmp_path) -> Path:
    path = tmp_path / "model.pt"
    torch.manual_seed(0)
    model = create_model("fashion_cnn").eval()
    save_checkpoint(path, {"format": CHECKPOINT_FORMAT, "model": "fashion_cnn", "model_args": {},
                           "state_dict": model.state_dict()})  # fmt: skip
    return path


def fashionclf(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fashionclf", *args], capture_output=True, text=True, timeout=120)


def test_a_folder_run_classifies_the_good_files_and_lists_the_bad(tmp_path, untrained_model):
    folder = tmp_path / "pictures"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.jpg").write_bytes(encode(garment_on_white(), "JPEG"))
    (folder / "sub" / "b.webp").write_bytes(encode(garment_on_white(), "WEBP"))
    for name, (content, _) in bad_inputs().items():
        (folder / name).write_bytes(content)
    result = fashionclf("predict", str(untrained_model), str(folder), "--json", "--top-k", "2",
                        "--save-input", str(tmp_path / "seen"))  # fmt: skip
    assert result.returncode == 2
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(Path(line["file"]).name for line in lines) == ["a.jpg", "b.webp"]
    assert all(len(line["top_k"]) == 2 and line["top_k"][0]["probability"] >= line["top_k"][1]["probability"]
               for line in lines)  # fmt: skip
    errors = result.stderr.strip().splitlines()
    assert len(errors) == len(bad_inputs()) and "Traceback" not in result.stderr
    assert sorted(p.name for p in (tmp_path / "seen").iterdir()) == ["a.png", "b.png"]
    assert Image.open(tmp_path / "seen" / "a.png").size == (28, 28)


def test_predict_refuses_a_missing_model(tmp_path):
    result = fashionclf("predict", str(tmp_path / "nope"), str(tmp_path))
    assert result.returncode == 2
    assert (
        result.stderr.strip() == f"fashionclf: error: {tmp_path / 'nope'}: model does not exist (give a run "
        "directory or a model file)"
    )


@pytest.mark.real_data
def test_pictures_written_from_the_test_set_get_the_models_label(trained_run, real_data, tmp_path):
    """1,000 test images as PNG, as they are and as 280x280 dark-on-white, agree with the model's own answer."""
    classifier = load_classifier(trained_run.root)
    images = real_data.test.images[:1000].numpy()
    expected = classifier.probabilities(images).argmax(axis=1)
    as_is, photo_like = tmp_path / "as-is", tmp_path / "photo-like"
    as_is.mkdir()
    photo_like.mkdir()
    for i, pixels in enumerate(images):
        image = Image.fromarray(pixels)
        image.save(as_is / f"{i:04d}.png")
        Image.fromarray(255 - np.asarray(image.resize((280, 280), Image.Resampling.NEAREST))).save(
            photo_like / f"{i:04d}.png"
        )
    for folder in (as_is, photo_like):
        files, _ = image_files([folder])
        results = list(predict_files(classifier, files, k=1))
        assert all(isinstance(r, Prediction) for r in results)
        got = np.array([r.top[0]["index"] for r in results])
        assert (got == expected).mean() >= 0.99, folder.name


def test_a_quantized_run_serves_its_int8_model_unless_fp32_is_asked_for(quantized_run, trained_run, real_data):
    int8 = load_classifier(quantized_run.root)
    assert "static" in int8.description or "qat" in int8.description
    fp32 = load_classifier(quantized_run.root, precision="fp32")
    assert "fp32" in fp32.description
    images = real_data.test.images[:2000].numpy()
    agreement = (int8.probabilities(images).argmax(1) == fp32.probabilities(images).argmax(1)).mean()
    assert agreement >= 0.99
    with pytest.raises(FashionClfError, match="no int8 model yet; run fashionclf quantize"):
        load_classifier(trained_run.root, precision="int8")


def test_a_model_file_is_used_as_it_is(quantized_run):
    classifier = load_classifier(quantized_run.quantized / "static.onnx")
    assert classifier.description.startswith("fashion_cnn static on onnxruntime")
