"""Inference on real pictures: any image Pillow reads, brought into Fashion-MNIST's domain, then classified.

Fashion-MNIST images are a light garment centred on a black background, 28x28, the object's longest side filling
the frame (measured on the test set: the longest side of every object's bounding box is 28 px; Zalando resized the
longest edge to 28). A photo is none of that, so it is preprocessed the same way:
1. decode (the content decides the format), apply EXIF orientation, take the first frame; refuse huge images
   before decoding their pixels;
2. grayscale in [0, 1] (8- or 16-bit, colour, CMYK, palette; transparency composited on white);
3. a light background (the median of the border) is inverted to dark, and the background level is subtracted;
4. crop to the object, pad to a square (keeping the aspect ratio), resize to 28x28; an object that already spans
   the picture keeps its place in it.
An input that is already 28x28 on a dark background is in the domain and passes through unchanged.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from fashionclf.backends import AGREEMENT_GOAL, dispatch, open_runner
from fashionclf.data import CLASSES, IMAGE_SIZE, to_float
from fashionclf.errors import FashionClfError
from fashionclf.rundir import RunDir, atomic_write, read_json

MAX_PIXELS = 50_000_000  # a 50-megapixel photo still opens; a decompression bomb does not
# Our own limit is checked as soon as the header is read, before any pixel is decoded, with a message that names
# the file; Pillow's built-in check would fire first with a message of its own.
Image.MAX_IMAGE_PIXELS = None
MIN_SIDE = 8
OBJECT_THRESHOLD = 0.02  # of full intensity, after background removal: what counts as the object when cropping


def open_image(source: Path | bytes, name: str) -> Image.Image:
    """Decode one image (first frame, EXIF orientation applied); FashionClfError naming `name` if it cannot be."""
    if isinstance(source, bytes | bytearray) and len(source) == 0 or isinstance(source, Path) and _empty(source):
        raise FashionClfError(f"{name}: empty file")
    try:
        image = Image.open(io.BytesIO(source) if isinstance(source, bytes | bytearray) else source)
        _check_size(image, name)
        image.seek(0)
        image.load()
    except FashionClfError:
        raise
    except FileNotFoundError:
        raise FashionClfError(f"{name}: file does not exist") from None
    except IsADirectoryError:
        raise FashionClfError(f"{name}: is a folder, not an image") from None
    except UnidentifiedImageError:
        raise FashionClfError(f"{name}: not an image (no format Pillow reads)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise FashionClfError(f"{name}: truncated or corrupt image ({exc})") from None
    return ImageOps.exif_transpose(image)


def _empty(path: Path) -> bool:
    return path.is_file() and path.stat().st_size == 0


def _check_size(image: Image.Image, name: str) -> None:
    """Only the header is read by now: the pixels of a huge image are never decoded."""
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise FashionClfError(f"{name}: image is {width}x{height} = {width * height:,} pixels, over the limit of "
                              f"{MAX_PIXELS:,}")  # fmt: skip
    if min(width, height) < MIN_SIDE:
        raise FashionClfError(f"{name}: image is {width}x{height}, too small (at least {MIN_SIDE}x{MIN_SIDE})")


def grayscale(image: Image.Image) -> np.ndarray:
    """float32 (H, W) in [0, 1]; transparency composited on white, as a product cut-out is shown on a page."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        values = np.asarray(image, dtype=np.float32)
        return np.clip(values / (65535.0 if values.max() > 255 else 255.0), 0, 1)
    if image.mode in ("P", "PA", "LA", "RGBA", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    return np.asarray(image.convert("RGB").convert("L"), dtype=np.float32) / 255.0


def to_dataset_domain(image: Image.Image) -> np.ndarray:
    """The 28x28 uint8 image the model sees: light garment, black background, object filling the frame."""
    gray = grayscale(image)
    if gray.shape == (IMAGE_SIZE, IMAGE_SIZE) and _border(gray).mean() < 0.5:
        return np.round(gray * 255).astype(np.uint8)
    background = float(np.median(_border(gray)))
    if background > 0.5:
        gray, background = 1.0 - gray, 1.0 - background
    gray = np.clip((gray - background) / max(1e-6, 1.0 - background), 0, 1)
    square = _square_around_object(gray)
    # Shrinking averages each block (BOX): wider kernels blur across blocks, and the model is sensitive to blur.
    resampling = Image.Resampling.BOX if len(square) >= IMAGE_SIZE else Image.Resampling.LANCZOS
    resized = Image.fromarray(np.round(square * 255).astype(np.uint8)).resize((IMAGE_SIZE, IMAGE_SIZE), resampling)
    return np.asarray(resized, dtype=np.uint8)


def _border(gray: np.ndarray) -> np.ndarray:
    return np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])


def _square_around_object(gray: np.ndarray) -> np.ndarray:
    """The smallest square holding the object's bounding box, kept inside the picture where it fits and padded with
    background where it does not, so an object that already spans the frame keeps its place."""
    mask = gray > OBJECT_THRESHOLD
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        rows, cols = np.arange(gray.shape[0]), np.arange(gray.shape[1])  # nothing stands out: keep it all
    side = max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1
    padded = np.zeros((gray.shape[0] + 2 * side, gray.shape[1] + 2 * side), dtype=gray.dtype)
    padded[side : side + gray.shape[0], side : side + gray.shape[1]] = gray
    top = _window_start(rows[0], rows[-1], side, gray.shape[0]) + side
    left = _window_start(cols[0], cols[-1], side, gray.shape[1]) + side
    return padded[top : top + side, left : left + side]


def _window_start(first: int, last: int, side: int, length: int) -> int:
    """Start of a window of `side` centred on [first, last], shifted to lie within [0, length) if it can."""
    start = (first + last + 1 - side) // 2
    if side <= length:
        start = min(max(start, 0), length - side)
    return start


Backend = Callable[[torch.Tensor], torch.Tensor]  # float32 (N, 1, 28, 28) in [0, 1] -> logits (N, 10)


@dataclass(frozen=True)
class Classifier:
    """A model behind a backend function; `description` names the model file and backend."""

    backend: Backend
    description: str

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities (N, 10) for uint8 images (N, 28, 28) already in the dataset's domain."""
        with torch.inference_mode():
            logits = self.backend(to_float(torch.from_numpy(np.ascontiguousarray(images))))
        return torch.softmax(logits.float(), dim=1).numpy()


PRECISIONS = ("auto", "fp32", "int8")


def load_classifier(path: Path, precision: str = "auto") -> Classifier:
    """A classifier from a model file this project wrote, or from a run directory: there the int8 model of
    `fashionclf quantize` when one agrees with fp32 (precision auto or int8), else fp32, on the backends measured
    fastest on this machine for single images and for batches."""
    path = Path(path)
    if precision not in PRECISIONS:
        raise FashionClfError(f"--precision: unknown {precision!r}; known: {', '.join(PRECISIONS)}")
    if not path.exists():
        raise FashionClfError(f"{path}: model does not exist (give a run directory or a model file)")
    if path.is_file():
        runner = open_runner(path)
        return Classifier(backend=runner, description=f"{runner.model} {runner.label} ({path})")
    chosen = dispatch(run_model_files(RunDir(path), precision))
    return Classifier(backend=chosen, description=chosen.description)


def run_model_files(run: RunDir, precision: str) -> list[Path]:
    """The files of the method `precision` asks for: each backend's copy of the same weights."""
    if not run.quantization.is_file():
        if precision == "int8":
            raise FashionClfError(f"{run.root}: no int8 model yet; run fashionclf quantize {run.root}")
        return [run.best_checkpoint]
    quantization = read_json(run.quantization)
    method = quantization["best_int8"] if precision != "fp32" else "fp32"
    if method is None:
        if precision == "int8":
            raise FashionClfError(f"{run.root}: no int8 model agrees with fp32 on {AGREEMENT_GOAL:.1%} of the test set")
        method = "fp32"
    return [run.root / entry["path"] for entry in quantization["methods"][method]["files"].values()]


def top_k(probabilities: np.ndarray, k: int) -> list[list[dict]]:
    order = np.argsort(-probabilities, axis=1)[:, :k]
    return [
        [{"class": CLASSES[i], "index": int(i), "probability": float(row[i])} for i in indices]
        for row, indices in zip(probabilities, order, strict=True)
    ]


@dataclass
class Prediction:
    name: str
    top: list[dict]
    model_input: np.ndarray  # the 28x28 uint8 image the model saw


def image_files(inputs: Iterable[Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files to classify (a folder's files, recursively, sorted) and the inputs that name nothing usable."""
    files, problems = [], []
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.is_file() and not p.name.startswith("."))
            if not found:
                problems.append((str(item), "folder holds no files"))
            files.extend(found)
        elif item.exists():
            files.append(item)
        else:
            problems.append((str(item), "file does not exist"))
    return files, problems


def predict_files(
    classifier: Classifier, files: list[Path], k: int = 3, batch_size: int = 256
) -> Iterator[Prediction | tuple[str, str]]:
    """Predictions in batches, in order; a file that cannot be read yields (name, problem) instead."""
    for start in range(0, len(files), batch_size):
        batch: list[tuple[str, np.ndarray]] = []
        for path in files[start : start + batch_size]:
            try:
                batch.append((str(path), to_dataset_domain(open_image(path, str(path)))))
            except FashionClfError as exc:
                yield str(path), str(exc).removeprefix(f"{path}: ")
        if batch:
            inputs = np.stack([array for _, array in batch])
            for (name, array), top in zip(batch, top_k(classifier.probabilities(inputs), k), strict=True):
                yield Prediction(name, top, array)


def save_model_input(prediction: Prediction, folder: Path) -> Path:
    """Write the 28x28 image the model saw, named after the input file."""
    target = Path(folder) / f"{Path(prediction.name).stem}.png"
    image = Image.fromarray(prediction.model_input)
    atomic_write(target, lambda tmp: image.save(tmp, format="PNG"))
    return target


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()
