"""Pictures into a model's input: decoding with limits, and the conversion into Fashion-MNIST's domain.

Time and memory are bounded by what a picture produces, not by the picture: its header is checked before any pixel
is decoded (at most MAX_PIXELS pixels, sides at least MIN_SIDE, an aspect ratio of at most MAX_ASPECT), JPEGs are
decoded at a reduced scale where that suffices, and the decoded picture is shrunk by block averages to at most
WORK_SIDE pixels a side before anything else (float conversion, cropping, padding) touches it. The peak is the
decoded picture itself: at most 4 bytes a pixel, 200 MB at the pixel limit.

Fashion-MNIST images are a light garment centred on a black background, 28x28, the object's longest side filling
the frame (measured on the test set: the longest side of every object's bounding box is 28 px; Zalando resized the
longest edge to 28). A photo is none of that, so `to_dataset_domain` brings it there:
1. grayscale in [0, 1] (8-bit, 16-bit or float levels, colour, CMYK, palette; transparency composited on white);
2. a light background (the median of the border) is inverted to dark, and the background level is subtracted;
3. crop to the object, pad to a square (keeping the aspect ratio), resize to 28x28; an object that already spans
   the picture keeps its place in it.
An input that is already 28x28 on a dark background is in the domain and passes through unchanged.
The `garment` preprocessing (garment_in_domain) first separates the garment from a cluttered background
(garment.py); the `photo` preprocessing keeps a photo's colour and framing for photo models (photo_square).

Preprocessings are registered by name, as models are: adding one is a function from a decoded picture to the
model's input, decorated with `@register_preprocessing`; `InputFormat`, the CLI and the errors ask the registry.
"""

from __future__ import annotations

import io
import math
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import EpsImagePlugin, Image, ImageFile, ImageOps, UnidentifiedImageError
from pillow_heif import as_plugin as heif
from pillow_heif import is_supported as is_heif

from fashionclf import garment
from fashionclf.errors import FashionClfError

MAX_PIXELS = 50_000_000  # a 50-megapixel photo still opens; a decompression bomb does not
MAX_ASPECT = 20  # a 20:1 panorama still opens; a 6,250,000x8 strip does not
MIN_SIDE = 8
MAX_HEIF_BYTES = 200_000_000  # pillow-heif reads the whole file before its header: a 50-megapixel HEIC is far less
WORK_SIDE = 512  # the longest side kept after decoding: more than any model's input needs
FASHION_MNIST_SIDE = 28
OBJECT_THRESHOLD = 0.02  # of full intensity, on a black background: what counts as the object rather than background
_ORIENTATION = 0x0112  # the EXIF tag
PHOTO_SIDES = range(MIN_SIDE, WORK_SIDE + 1)

Prepare = Callable[[Image.Image, int], np.ndarray]  # (decoded picture, side) -> uint8 (channels, side, side)


@dataclass(frozen=True)
class Frame:
    """The square of a decoded picture that a model input shows, in the picture's pixels: its left and top edges and
    its side (it reaches past the picture's edges where the input is padded). What a heat map over the model's
    input is drawn into, to show it over the picture."""

    left: float
    top: float
    side: float


PrepareFramed = Callable[[Image.Image, int], tuple[np.ndarray, Frame]]  # as Prepare, and the square it shows


@dataclass(frozen=True)
class PreprocessingEntry:
    name: str
    prepare: Prepare
    channels: int
    sides: Sequence[int]  # the sides of the square inputs it gives
    domain: str  # what its inputs look like: a model takes every preprocessing of its input's domain
    description: str
    framed: PrepareFramed | None = None  # the same, with the Frame it shows (heat maps are drawn over the picture)


_PREPROCESSINGS: dict[str, PreprocessingEntry] = {}


def register_preprocessing(
    name: str, *, channels: int, sides: Sequence[int], domain: str | None = None, framed: PrepareFramed | None = None
):
    """Register `prepare(picture, side)`, which gives uint8 (channels, side, side) for every side in `sides`, under
    `name`. Preprocessings of one `domain` (by default, a domain of their own) give the same kind of input, so a
    model takes each of them (`--preprocessing`). `framed(picture, side)` gives the same input and the Frame of the
    picture it shows, for heat maps drawn over the picture. The docstring's first line becomes the description."""

    def decorate(prepare: Prepare) -> Prepare:
        if name in _PREPROCESSINGS:
            raise ValueError(f"preprocessing {name!r} is registered twice")
        description = (prepare.__doc__ or name).strip().splitlines()[0]
        entry = PreprocessingEntry(name, prepare, channels, sides, domain or name, description, framed)
        _PREPROCESSINGS[name] = entry
        return prepare

    return decorate


def list_preprocessings(domain: str | None = None) -> list[str]:
    """The registered preprocessings (of `domain`, where given)."""
    return sorted(name for name, entry in _PREPROCESSINGS.items() if domain in (None, entry.domain))


def preprocessing_entry(name: str) -> PreprocessingEntry:
    try:
        return _PREPROCESSINGS[name]
    except KeyError:
        raise FashionClfError(f"unknown preprocessing {name!r}; known: {', '.join(list_preprocessings())}") from None


def open_image(source: Path | bytes, name: str) -> Image.Image:
    """Decode one picture (first frame, EXIF orientation applied, longest side at most WORK_SIDE, 16-bit and float
    levels as float levels in [0, 1]); FashionClfError naming `name` if it cannot be, or if it is outside the
    limits."""
    with _decoding(source, name) as image:
        check_size(image.size, name)
        if image.format != "HEIF":  # a HEIF file's first image need not be its primary one, the photo
            image.seek(0)
        orientation = image.getexif().get(_ORIENTATION, 1)
        image.draft(None, (WORK_SIDE, WORK_SIDE))  # JPEG: decode at 1/2, 1/4 or 1/8 scale where that still suffices
        image.load()
        image = _levels(_shrunk(image), name)
    image.getexif()[_ORIENTATION] = orientation  # shrinking made a new image; its orientation is the file's
    return ImageOps.exif_transpose(image)


def read_header(source: Path | bytes, name: str) -> int:
    """The picture's pixel count, from its header alone, if it is within the limits."""
    with _decoding(source, name) as image:
        return check_size(image.size, name)


@contextmanager
def _decoding(source: Path | bytes, name: str) -> Iterator[Image.Image]:
    """The opened picture; every way decoding can fail becomes one FashionClfError naming `name`."""
    if isinstance(source, bytes | bytearray) and len(source) == 0 or isinstance(source, Path) and _empty(source):
        raise FashionClfError(f"{name}: empty file")
    try:
        with _opened(io.BytesIO(source) if isinstance(source, bytes | bytearray) else source, name) as image:
            if why := _unsupported(image):
                raise FashionClfError(f"{name}: format not supported ({why})")
            yield image
    except FashionClfError:
        raise
    except Image.DecompressionBombError as exc:  # Pillow's own guard, for pictures far over our limit
        raise FashionClfError(f"{name}: image is {_pixels_in(exc)} pixels, over the limit of {MAX_PIXELS:,}") from None
    except MemoryError:
        raise FashionClfError(f"{name}: not enough memory to decode the image") from None
    except FileNotFoundError:
        raise FashionClfError(f"{name}: file does not exist") from None
    except IsADirectoryError:
        raise FashionClfError(f"{name}: is a folder, not an image") from None
    except UnidentifiedImageError:
        raise FashionClfError(f"{name}: not an image (no format Pillow reads)") from None
    except (OSError, EOFError, SyntaxError, ValueError, RuntimeError) as exc:  # EOF, Runtime: libheif's errors
        raise FashionClfError(f"{name}: truncated or corrupt image ({exc})") from None


def _opened(file: Path | io.BytesIO, name: str) -> Image.Image:
    """The picture opened, its pixels not decoded yet: by Pillow, or where it is HEIF (HEIC, the format iPhones take
    photos in, which Pillow does not read) by pillow-heif's Pillow image class, used directly rather than registered
    in Pillow, which fashionclf leaves as it found it. libheif turns the photo upright as it decodes (its EXIF
    orientation is then reset to 1)."""
    try:
        return Image.open(file)
    except UnidentifiedImageError:
        if isinstance(file, io.BytesIO):
            file.seek(0)
        if not is_heif(file):
            raise
        size = file.getbuffer().nbytes if isinstance(file, io.BytesIO) else os.stat(file).st_size
        if size > MAX_HEIF_BYTES:
            message = f"{name}: HEIF file of {size:,} bytes, over the limit of {MAX_HEIF_BYTES:,}"
            raise FashionClfError(message) from None
        return heif.HeifImageFile(file)


def _unsupported(image: Image.Image) -> str | None:
    """Why Pillow recognises the picture's format but cannot decode it on this machine, or None: its decoding error
    ("Unable to locate Ghostscript", "cannot find loader") would read as a corrupt file."""
    if image.format == "EPS" and not EpsImagePlugin.has_ghostscript():
        return "EPS, which Pillow draws with Ghostscript, not installed here"
    if isinstance(image, ImageFile.StubImageFile) and image._handler is None:
        return f"{image.format}, which Pillow recognises but cannot decode here"
    return None


def _empty(path: Path) -> bool:
    return path.is_file() and path.stat().st_size == 0


def _pixels_in(exc: Exception) -> str:
    match = re.search(r"\((\d+) pixels\)", str(exc))
    return f"{int(match.group(1)):,}" if match else "too many"


def check_size(size: tuple[int, int], name: str) -> int:
    """The picture's pixel count, if its header's size is within the limits (only the header is read by now, so the
    pixels of a huge picture are never decoded)."""
    width, height = size
    if width * height > MAX_PIXELS:
        raise FashionClfError(f"{name}: image is {width}x{height} = {width * height:,} pixels, over the limit of "
                              f"{MAX_PIXELS:,}")  # fmt: skip
    if min(width, height) < MIN_SIDE:
        raise FashionClfError(f"{name}: image is {width}x{height}, too small (at least {MIN_SIDE}x{MIN_SIDE})")
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise FashionClfError(f"{name}: image is {width}x{height}, an aspect ratio over {MAX_ASPECT}:1")
    return width * height


def _shrunk(image: Image.Image) -> Image.Image:
    """The picture in a mode Pillow can average, its longest side at most WORK_SIDE (block averages, so nothing
    larger than the result is allocated)."""
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif image.mode == "1":
        image = image.convert("L")
    elif image.mode.startswith("I;16"):
        image = image.convert("I")
    factor = math.ceil(max(image.size) / WORK_SIDE)
    return image.reduce(factor) if factor > 1 else image


# The full scales of a picture's levels, smallest first: a float picture's are in [0, 1], or 8- or 16-bit levels; an
# integer one's (16- or 32-bit) are 16-bit levels, or 8-bit ones stored in 16 bits.
FULL_SCALES = {"F": (1.0, 255.0, 65535.0), "I": (255.0, 65535.0)}


def _levels(image: Image.Image, name: str) -> Image.Image:
    """16-bit, 32-bit and float pictures as float levels in [0, 1] (mode F), scaled by the smallest full scale that
    holds their values; Pillow's own conversions read every value as an 8-bit level, so a float picture in [0, 1]
    became black and a 16-bit one white. Values that fit no scale are refused, not guessed at."""
    if image.mode not in FULL_SCALES:
        return image
    values = np.asarray(image, dtype=np.float32)
    if not np.isfinite(values).all():
        raise FashionClfError(f"{name}: pixel values that are not numbers (NaN or infinite)")
    low, high = float(values.min()), float(values.max())
    scale = next((full for full in FULL_SCALES[image.mode] if low >= 0 and high <= full), None)
    if scale is None:
        ranges = ", ".join(f"[0, {full:g}]" for full in FULL_SCALES[image.mode])
        raise FashionClfError(f"{name}: pixel values from {low:g} to {high:g}, in no range of levels ({ranges})")
    return Image.fromarray(values / scale)


def grayscale(image: Image.Image) -> np.ndarray:
    """float32 (H, W) in [0, 1]; transparency composited on white, as a product cut-out is shown on a page."""
    if image.mode == "F":  # levels in [0, 1] already (open_image)
        return np.asarray(image, dtype=np.float32)
    return np.asarray(on_white(image).convert("L"), dtype=np.float32) / 255.0


def on_white(image: Image.Image) -> Image.Image:
    """The picture in RGB, transparency composited on white, as a product cut-out is shown on a page."""
    if image.mode == "F":  # levels in [0, 1] (open_image), which Pillow's conversion would read as 0-255
        image = Image.fromarray(np.round(np.asarray(image) * 255).astype(np.uint8))
    if image.mode in ("PA", "LA", "RGBA", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return image.convert("RGB")


def _dataset_domain(image: Image.Image, side: int) -> tuple[np.ndarray, Frame]:
    array, frame = _gray_in_domain(grayscale(image), side)
    return array[None], frame


@register_preprocessing("fashion-mnist", channels=1, sides=(FASHION_MNIST_SIDE,), framed=_dataset_domain)
def to_dataset_domain(image: Image.Image, side: int = FASHION_MNIST_SIDE) -> np.ndarray:
    """A light garment on black filling the frame, as in Fashion-MNIST.

    The uint8 (1, side, side) image the model sees: light garment, black background, object filling the frame."""
    return _dataset_domain(image, side)[0]


def _garment_domain(image: Image.Image, side: int) -> tuple[np.ndarray, Frame]:
    gray = grayscale(image)
    if not _in_domain(gray, side) and not garment.has_plain_background(gray):
        found = garment.segmented(on_white(image), side)
        if found is not None:
            array, (left, top, square_side) = found
            return array[None], Frame(left, top, square_side)
    array, frame = _gray_in_domain(gray, side)
    return array[None], frame


@register_preprocessing(
    "garment", channels=1, sides=(FASHION_MNIST_SIDE,), domain="fashion-mnist", framed=_garment_domain
)
def garment_in_domain(image: Image.Image, side: int = FASHION_MNIST_SIDE) -> np.ndarray:
    """As fashion-mnist, the garment first separated from a cluttered background.

    See garment.py; a picture on a plain background, or one where no garment is found, comes out exactly as
    `to_dataset_domain` gives it."""
    return _garment_domain(image, side)[0]


def _gray_in_domain(gray: np.ndarray, side: int) -> tuple[np.ndarray, Frame]:
    if _in_domain(gray, side):
        return np.round(gray * 255).astype(np.uint8), Frame(0, 0, side)
    return _framed_object(gray, side)


def _in_domain(gray: np.ndarray, side: int) -> bool:
    """Already a Fashion-MNIST image: side x side on a dark background."""
    return gray.shape == (side, side) and _border(gray).mean() < 0.5


def _framed_object(gray: np.ndarray, side: int) -> tuple[np.ndarray, Frame]:
    background = float(np.median(_border(gray)))
    if background > 0.5:
        gray, background = 1.0 - gray, 1.0 - background
    gray = np.clip((gray - background) / max(1e-6, 1.0 - background), 0, 1)
    square, frame = _square_around_object(gray)
    # Shrinking averages each block (BOX): wider kernels blur across blocks, and the model is sensitive to blur.
    resampling = Image.Resampling.BOX if len(square) >= side else Image.Resampling.LANCZOS
    resized = Image.fromarray(np.round(square * 255).astype(np.uint8)).resize((side, side), resampling)
    return np.asarray(resized, dtype=np.uint8), frame


def _border(gray: np.ndarray) -> np.ndarray:
    return np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])


def _square_around_object(gray: np.ndarray) -> tuple[np.ndarray, Frame]:
    """The smallest square holding the object's bounding box, kept inside the picture where it fits and padded with
    background where it does not, so an object that already spans the frame keeps its place."""
    mask = gray > OBJECT_THRESHOLD
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        rows, cols = np.arange(gray.shape[0]), np.arange(gray.shape[1])  # nothing stands out: keep it all
    side = max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1
    top = _window_start(rows[0], rows[-1], side, gray.shape[0])
    left = _window_start(cols[0], cols[-1], side, gray.shape[1])
    square = np.zeros((side, side), dtype=gray.dtype)
    inside = gray[max(top, 0) : top + side, max(left, 0) : left + side]
    square[max(-top, 0) : max(-top, 0) + inside.shape[0], max(-left, 0) : max(-left, 0) + inside.shape[1]] = inside
    return square, Frame(int(left), int(top), int(side))


def _window_start(first: int, last: int, side: int, length: int) -> int:
    """Start of a window of `side` centred on [first, last], shifted to lie within [0, length) if it can."""
    start = (first + last + 1 - side) // 2
    if side <= length:
        start = min(max(start, 0), length - side)
    return start


@dataclass(frozen=True)
class InputFormat:
    """How a picture becomes a model's input: the preprocessing, and the uint8 array (channels, size, size) it
    yields. Fashion-MNIST's 28x28 grayscale is the default."""

    preprocessing: str = "fashion-mnist"
    channels: int = 1
    size: int = FASHION_MNIST_SIDE

    def __post_init__(self) -> None:
        entry = preprocessing_entry(self.preprocessing)
        if self.channels != entry.channels or self.size not in entry.sides:
            raise FashionClfError(f"{self.preprocessing} preprocessing cannot give {self.describe()} input")

    @property
    def domain(self) -> str:
        """What the model's input looks like: "photo", or "fashion-mnist" (either Fashion-MNIST preprocessing)."""
        return preprocessing_entry(self.preprocessing).domain

    def using(self, preprocessing: str | None) -> InputFormat:
        """The same input reached by another preprocessing of its domain (None: this one)."""
        if preprocessing in (None, self.preprocessing):
            return self
        interchangeable = list_preprocessings(self.domain)
        if preprocessing not in interchangeable:
            known = ", ".join(interchangeable)
            raise FashionClfError(f"--preprocessing {preprocessing}: this model's input is reached by {known}")
        return replace(self, preprocessing=preprocessing)

    def prepare(self, image: Image.Image) -> np.ndarray:
        """uint8 (channels, size, size): the picture as this model's input."""
        return preprocessing_entry(self.preprocessing).prepare(image, self.size)

    def prepare_framed(self, image: Image.Image) -> tuple[np.ndarray, Frame]:
        """The model input, and the square of the picture it shows."""
        entry = preprocessing_entry(self.preprocessing)
        if entry.framed is None:
            raise FashionClfError(
                f"the {self.preprocessing} preprocessing does not say which part of a picture it shows"
            )
        return entry.framed(image, self.size)

    def describe(self) -> str:
        kind = "grayscale" if self.channels == 1 else "RGB"
        return f"{self.size}x{self.size} {kind}"


FASHION_MNIST_INPUT = InputFormat()

# The classes of a Dataset or a model that names none: Fashion-MNIST's, in the order of its labels.
FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


def _photo_square(image: Image.Image, size: int) -> tuple[np.ndarray, Frame]:
    rgb = on_white(image)
    scale = size / max(rgb.size)
    fitted = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
    pixels = np.asarray(rgb.resize(fitted, Image.Resampling.BOX if scale < 1 else Image.Resampling.BICUBIC))
    top, left = (size - fitted[1]) // 2, (size - fitted[0]) // 2
    padding = ((top, size - fitted[1] - top), (left, size - fitted[0] - left), (0, 0))
    square = np.ascontiguousarray(np.pad(pixels, padding, mode="edge").transpose(2, 0, 1))
    return square, Frame(-left / scale, -top / scale, size / scale)


@register_preprocessing("photo", channels=3, sides=PHOTO_SIDES, framed=_photo_square)
def photo_square(image: Image.Image, size: int) -> np.ndarray:
    """The photo in colour, fitted into the model's square, for photo models.

    The longer side scaled to `size`, the shorter padded equally on both sides by repeating its edge pixels (never
    distorted, and with no frame a model could learn from); transparency composited on white. uint8 (3, size,
    size)."""
    return _photo_square(image, size)[0]


def to_picture(array: np.ndarray) -> Image.Image:
    """A model input (channels, height, width) as a picture, to show what the model saw."""
    return Image.fromarray(array[0] if len(array) == 1 else array.transpose(1, 2, 0))


def image_files(inputs: Iterable[Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files to classify (a folder's files, recursively, sorted; see `folder_files`) and the inputs that name
    nothing usable, with the reason."""
    files, problems = [], []
    for item in map(Path, inputs):
        if item.is_dir():
            (found,), skipped = folder_files([item])
            if not found and not skipped:
                problems.append((str(item), "folder holds no files"))
            files.extend(found)
            problems.extend(skipped)
        elif problem := not_a_file(item):
            problems.append((str(item), problem))
        else:
            files.append(item)
    return files, problems


FolderId = tuple[int, int]  # (device, inode): one folder, whatever path leads to it
REACHED_AGAIN = "a folder already included, reached again through a symbolic link"


def folder_files(
    roots: Sequence[Path], walked: set[FolderId] | None = None
) -> tuple[list[list[Path]], list[tuple[str, str]]]:
    """The regular files below each root, sorted, hidden files and folders left out, and what was skipped, with the
    reason: broken links, special files (see `not_a_file`), and folders reached a second time. Symbolic links are
    followed wherever they point, as the user made them, but every folder is walked once: the roots' own trees first,
    then the links in them, so that a link loop ends and a link to a folder already included (another root, or the
    roots' own sub-folders) does not count its files twice. `walked` holds folders not to walk (the other folders of
    a photo layout)."""
    walked = set() if walked is None else walked
    trees = [_real_tree(root, walked) for root in roots]
    skipped = [problem for _, _, left_out in trees for problem in left_out]
    files_of_roots = []
    for files, links, _ in trees:
        while links:
            link = links.pop(0)
            if folder_id(link) in walked:
                skipped.append((str(link), REACHED_AGAIN))
                continue
            more_files, more_links, left_out = _real_tree(link, walked)
            files += more_files
            links += more_links
            skipped += left_out
        files_of_roots.append(sorted(files))
    return files_of_roots, sorted(skipped)


def _real_tree(root: Path, walked: set[FolderId]) -> tuple[list[Path], list[Path], list[tuple[str, str]]]:
    """The files below `root` reached without following a link to a folder, those links, and what was skipped; the
    folders walked are added to `walked`."""
    walked.add(folder_id(root))
    files: list[Path] = []
    links: list[Path] = []
    skipped: list[tuple[str, str]] = []

    def unreadable(exc: OSError) -> None:
        skipped.append((str(exc.filename), f"cannot be read ({exc.strerror})"))

    for here, folders, names in os.walk(root, onerror=unreadable):
        kept = []
        for path in sorted(Path(here, name) for name in folders if not name.startswith(".")):
            if path.is_symlink():
                links.append(path)
            elif folder_id(path) in walked:  # a folder of another root, inside a tree reached through a link
                skipped.append((str(path), REACHED_AGAIN))
            else:
                walked.add(folder_id(path))
                kept.append(path.name)
        folders[:] = kept  # os.walk descends into these alone
        for path in (Path(here, name) for name in names if not name.startswith(".")):
            if problem := not_a_file(path):
                skipped.append((str(path), problem))
            else:
                files.append(path)
    return files, links, skipped


def folder_id(folder: Path) -> FolderId:
    info = folder.stat()
    return info.st_dev, info.st_ino


_SPECIAL = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
            stat.S_IFSOCK: "a socket"}  # fmt: skip


def not_a_file(path: Path) -> str | None:
    """Why `path`, which is not a folder, is not a file to read, found without opening it (a FIFO or a device would
    wait forever to be read), or None for a regular file."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return f"broken symbolic link (to {os.readlink(path)})" if path.is_symlink() else "file does not exist"
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if stat.S_ISREG(mode):
        return None
    return f"not a regular file ({_SPECIAL.get(stat.S_IFMT(mode), 'a special file')})"


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    to_picture(array).save(buffer, format="PNG")
    return buffer.getvalue()
