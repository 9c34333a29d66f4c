"""Folders of labelled photos: their layout and class names, their splits, and a decoded, memory-mapped cache.

    DIR/<class>/*                           one folder per class: a seeded, stratified test hold-out is made here,
                                            the validation hold-out by `train`
    DIR/train/<class>/*                     splits as given; with no validation/, `train` holds one out of train/;
    DIR/validation/<class>/* (or val/)      with no test/, results are reported on the validation split
    DIR/test/<class>/*

Class names are the folder names, sorted (when every one names a Fashion-MNIST class, forgivingly spelled, the
classes are Fashion-MNIST's, in its order). Each photo is decoded once, brought into the model's input format
(`preprocess.InputFormat`), and cached under ~/.cache/fashionclf/photos as one raw uint8 array per split, keyed by
the files' content, their labels and the preprocessing, and read back memory-mapped: a set larger than memory
trains with memory bounded by what a batch touches.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from fashionclf.datasets import Dataset, Split, cache_root, split_off_test
from fashionclf.errors import FashionClfError
from fashionclf.files import file_sha256, one_line, writing
from fashionclf.preprocess import FASHION_MNIST_CLASSES, InputFormat, folder_files, folder_id, not_a_file, open_image

CACHE_VERSION = 5  # part of every cache key: bump it when decoding or preprocessing changes (5: HEIC read)
SPLIT_FOLDERS = {"train": "train", "validation": "validation", "val": "validation", "test": "test"}
DECODE_CHUNK = 1024  # photos decoded at a time: bounds the memory of a cache being built


def read_photo_dataset(folder: Path, input: InputFormat, cache_dir: Path | None = None) -> Dataset:
    """A folder of labelled photos as a Dataset whose images are in `input`'s format."""
    folder = Path(folder)
    layout, skipped = photo_layout(folder)
    for path, problem in skipped:
        tqdm.write(one_line(f"skipped {path}: {problem}"), file=sys.stderr)
    classes, label_of = class_names(folder, layout)
    splits, digests, origins = {}, {}, {}
    for name, class_files in layout.items():
        labelled = [(path, label_of[cls]) for cls, files in class_files.items() for path in files]
        splits[name], digests[name] = read_split(labelled, classes, input, f"{folder}/{name}", cache_dir)
        origins[name] = f"{name}/ of {folder.name} ({len(splits[name]):,} photos)"
        _check_every_class_read(folder / name if name != "all" else folder, classes, label_of, splits[name])
    if "all" in splits:  # no split folders: the test split is held out here, the same for every run
        splits["train"], splits["test"], origins = split_off_test(splits.pop("all"), folder, "photos")
    return Dataset(
        train=splits["train"],
        test=splits.get("test"),
        directory=folder,
        origin="photos",
        checksums={split_digest_name(name): digest for name, digest in digests.items()},
        split_origins=origins,
        classes=classes,
        validation=splits.get("validation"),
        input=input,
    )


def split_digest_name(split: str) -> str:
    """The name a photo folder's split has among the data's checksums (one digest per split)."""
    return f"{split} photos"


def photo_layout(folder: Path) -> tuple[dict[str, dict[str, list[Path]]], list[tuple[str, str]]]:
    """split -> class -> files ("all" for a folder without split folders), every rule of the layout checked, and
    what was left out, with the reason (broken links, special files: see `preprocess.folder_files`)."""
    subfolders, skipped = _entries(folder)
    if not subfolders:
        raise FashionClfError(f"{folder}: neither Fashion-MNIST files (IDX or CSV) nor class sub-folders of photos")
    _check_no_loose_photos(folder)
    split_folders = _split_folders(folder, subfolders)
    class_folders = {}
    for split, split_folder in split_folders.items():
        class_folders[split], left_out = _class_folders(split_folder) if split != "all" else (subfolders, [])
        skipped += left_out
    # Every folder of the layout counts as walked: a link in a class folder to another class or split is skipped.
    layout_folders = [folder, *split_folders.values(), *itertools.chain.from_iterable(class_folders.values())]
    walked = {folder_id(path) for path in layout_folders}
    layout = {}
    for split, folders in class_folders.items():
        files, left_out = folder_files(folders, walked)
        layout[split] = {sub.name: found for sub, found in zip(folders, files, strict=True)}
        skipped += left_out
    if "all" not in layout:
        _check_same_classes(folder, layout)
    return layout, skipped


def _split_folders(folder: Path, subfolders: list[Path]) -> dict[str, Path]:
    """split -> its folder; {"all": folder} where there are no split folders."""
    if not any(sub.name.lower() == "train" for sub in subfolders):
        _check_two_classes(folder, subfolders)
        return {"all": folder}
    splits: dict[str, Path] = {}
    for sub in subfolders:
        split = SPLIT_FOLDERS.get(sub.name.lower())
        if split is None:
            raise FashionClfError(f"{sub}: not a split folder (expected train, validation or val, test)")
        if split in splits:
            raise FashionClfError(f"{folder}: both val/ and validation/; keep one")
        splits[split] = sub
    return splits


def _entries(folder: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """The folder's sub-folders, sorted, and what is neither a folder nor a file (a broken link, a FIFO), with the
    reason; hidden entries left out."""
    subfolders, skipped = [], []
    for path in sorted(p for p in folder.iterdir() if not p.name.startswith(".")):
        if path.is_dir():
            subfolders.append(path)
        elif problem := not_a_file(path):
            skipped.append((str(path), problem))
    return subfolders, skipped


def _check_no_loose_photos(folder: Path) -> None:
    """Photos lying beside the class folders belong to no class; other files (a LICENSE, a README) may."""
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        if is_picture(path):
            raise FashionClfError(f"{path}: a photo beside the class folders; every photo belongs in a class folder")


def is_picture(path: Path) -> bool:
    try:
        with Image.open(path):
            return True
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return False


def _class_folders(split_folder: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    subfolders, skipped = _entries(split_folder)
    _check_no_loose_photos(split_folder)
    _check_two_classes(split_folder, subfolders)
    return subfolders, skipped


def _check_two_classes(folder: Path, class_folders: list[Path]) -> None:
    if len(class_folders) < 2:
        raise FashionClfError(
            f"{folder}: {len(class_folders)} class folder(s); a classifier needs at least two classes"
        )


def _check_same_classes(folder: Path, layout: dict[str, dict[str, list[Path]]]) -> None:
    train = set(layout["train"])
    for split, classes in layout.items():
        if set(classes) != train:
            missing, extra = sorted(train - set(classes)), sorted(set(classes) - train)
            differences = [f"lacks {', '.join(missing)}"] * bool(missing) + [f"adds {', '.join(extra)}"] * bool(extra)
            raise FashionClfError(f"{folder}: {split}/ has other classes than train/ (it {'; '.join(differences)})")


def class_key(name: str) -> str:
    """Forgiving class names: case, spaces, underscores, hyphens and slashes do not matter."""
    return re.sub(r"[\s_\-/]+", "", name.lower())


def class_names(folder: Path, layout: dict[str, dict[str, list[Path]]]) -> tuple[tuple[str, ...], dict[str, int]]:
    """The class names and each class folder's label: Fashion-MNIST's classes when every folder names one of them,
    else the folder names, sorted."""
    folders = sorted(next(iter(layout.values())))
    fashion_mnist = {class_key(name): index for index, name in enumerate(FASHION_MNIST_CLASSES)}
    if all(class_key(name) in fashion_mnist for name in folders):
        return FASHION_MNIST_CLASSES, {name: fashion_mnist[class_key(name)] for name in folders}
    keys = [class_key(name) for name in folders]
    if len(set(keys)) < len(keys):
        raise FashionClfError(f"{folder}: class folders whose names differ only in case or punctuation")
    return tuple(folders), {name: index for index, name in enumerate(folders)}


def _check_every_class_read(folder: Path, classes: tuple[str, ...], label_of: dict[str, int], split: Split) -> None:
    missing = set(label_of.values()) - set(torch.unique(split.labels).tolist())
    if missing:
        name = next(name for name, label in sorted(label_of.items()) if label in missing)
        raise FashionClfError(f"{folder / name}: no readable photo in this class folder")


def read_split(
    labelled: list[tuple[Path, int]],
    classes: tuple[str, ...],
    input: InputFormat,
    what: str,
    cache_dir: Path | None = None,
) -> tuple[Split, str]:
    """The photos decoded into `input`'s format (from the cache when it holds them) and their digest: a SHA-256
    over every photo's SHA-256 and class, what a run records of its data. The cache key adds the cache's version and
    the input format to it, so neither a new version nor another preprocessing reads as other photos. Unreadable
    photos are skipped and listed on stderr."""
    digests = _digests([path for path, _ in labelled])
    entries = "".join(f"{digest} {classes[label]}\n" for digest, (_, label) in zip(digests, labelled, strict=True))
    settings = f"v{CACHE_VERSION} {input.preprocessing} {input.channels}x{input.size}x{input.size}\n"
    key = hashlib.sha256((settings + entries).encode()).hexdigest()[:32]
    entry = (cache_dir or cache_root() / "photos") / key
    if not (entry / "index.json").is_file():
        _build(entry, labelled, input, what)
    return _load(entry, input, what), hashlib.sha256(entries.encode()).hexdigest()


def _digests(paths: list[Path]) -> list[str]:
    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:  # hashlib releases the GIL on large reads
        return list(pool.map(file_sha256, paths))


def _build(entry: Path, labelled: list[tuple[Path, int]], input: InputFormat, what: str) -> None:
    """Decode every photo into a raw uint8 file beside an index; written under a temporary name and renamed, so a
    cache entry is whole or absent. A full or read-only disk is one error naming the entry."""
    building = entry.with_name(f".{entry.name}.{os.getpid()}.tmp")
    with writing(entry):
        entry.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir()
        try:
            with (building / "images.u8").open("wb") as out:
                labels, skipped = _decode_into(out, labelled, input, what)
            np.save(building / "labels.npy", np.array(labels, dtype=np.int64))
            index = {"photos": len(labels), "shape": list(input_shape(input)), "skipped": skipped}
            (building / "index.json").write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")
            os.replace(building, entry)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise


def _decode_into(out, labelled: list[tuple[Path, int]], input: InputFormat, what: str) -> tuple[list[int], list[str]]:
    """Decode in a thread pool (Pillow releases the GIL), DECODE_CHUNK photos at a time, appending each array to
    `out` in order; returns the labels of the photos written and the problems of those skipped."""
    labels, skipped = [], []
    with (
        ThreadPoolExecutor(os.cpu_count() or 2) as pool,
        tqdm(total=len(labelled), desc=f"decoding {what}", unit="photo", disable=None, leave=False) as bar,
    ):
        for start in range(0, len(labelled), DECODE_CHUNK):
            chunk = labelled[start : start + DECODE_CHUNK]
            paths, chunk_labels = zip(*chunk, strict=True)
            for label, result in zip(chunk_labels, pool.map(_decoded(input), paths), strict=True):
                if isinstance(result, str):
                    skipped.append(result)
                else:
                    out.write(result.tobytes())
                    labels.append(label)
            bar.update(len(chunk))
    return labels, skipped


def input_shape(input: InputFormat) -> tuple[int, int, int]:
    return (input.channels, input.size, input.size)


def _decoded(input: InputFormat):
    def decode(path: Path) -> np.ndarray | str:
        try:
            return input.prepare(open_image(path, str(path)))
        except FashionClfError as exc:
            return str(exc)

    return decode


def _load(entry: Path, input: InputFormat, what: str) -> Split:
    index = json.loads((entry / "index.json").read_text(encoding="utf-8"))
    for problem in index["skipped"]:
        tqdm.write(one_line(f"skipped {problem}"), file=sys.stderr)
    if not index["photos"]:
        raise FashionClfError(f"{what}: no readable photos")
    shape = (index["photos"], *input_shape(input))
    # Copy-on-write: pages are read from disk as batches touch them, and the array is writable for torch.
    images = np.memmap(entry / "images.u8", dtype=np.uint8, mode="c", shape=shape)
    return Split(torch.from_numpy(images), torch.from_numpy(np.load(entry / "labels.npy")))
