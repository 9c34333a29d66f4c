"""Transfer learning on a frozen pretrained backbone, and zero-shot heads from its ImageNet classes.

Frozen: every photo's views go through the backbone once; the pooled features (photos x views x features, float16)
are cached under ~/.cache/fashionclf/features, keyed by the photos' pixels and the backbone's weights, and read
back memory-mapped, so each epoch of the head costs what a small MLP costs. The backbone runs on ONNX Runtime for
this: on 2 AVX2 cores EfficientNet-Lite0 took 11 ms a 224-px image there against 51 ms in PyTorch (channels-last).

Zero-shot: the head scores each class by the ImageNet classes a shipped, editable map gives its name
(imagenet/garments.json): no photo's label is used.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from fashionclf.backends import onnx_program
from fashionclf.datasets import Split, cache_root
from fashionclf.errors import FashionClfError
from fashionclf.files import atomic_write
from fashionclf.networks import predict_logits
from fashionclf.pretrained import HeadOnFeatures, ImageNetVote, MLPHead, PhotoTransfer

CACHE_VERSION = 1  # part of every cache key: bump it when the views or the pooling change
PHOTOS_PER_BATCH = 16
# The export to ONNX Runtime takes about 20 s and saves about 0.15 s a photo (Lite0, four views at 288 px, 2 AVX2
# cores): fewer photos than this are quicker in PyTorch.
EXPORT_PAYS_OFF = 128
IMAGENET_MAP = "garments.json"


def features(model: PhotoTransfer, split: Split, what: str, cache_dir: Path | None = None) -> Split:
    """The split's photos as pooled features (N, views, features), float16, memory-mapped from the cache (computed
    and cached the first time)."""
    key = _key(model, split)
    path = (cache_dir or cache_root() / "features") / f"{key}.npy"
    if not path.is_file():
        computed = _computed(model, split.images, what)
        atomic_write(path, lambda tmp: _save(tmp, computed))
    return Split(torch.from_numpy(np.load(path, mmap_mode="c")), split.labels)


def _save(path: Path, array: np.ndarray) -> None:
    with path.open("wb") as out:  # closed, so flushed, before atomic_write renames it into place
        np.save(out, array)


def _key(model: PhotoTransfer, split: Split) -> str:
    digest = hashlib.sha256(f"v{CACHE_VERSION} {type(model.views).__name__} {model.views.size}\n".encode())
    for name, tensor in model.backbone.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().numpy().tobytes())
    images = split.images.numpy()
    for start in range(0, len(images), 256):  # a memory-mapped split is hashed a slice at a time
        digest.update(np.ascontiguousarray(images[start : start + 256]).tobytes())
    return digest.hexdigest()[:32]


class _Pooled(torch.nn.Module):
    """What is exported to ONNX Runtime: photos in [0, 1] -> their views' pooled features."""

    def __init__(self, model: PhotoTransfer):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.pooled(x)


def _computed(model: PhotoTransfer, images: torch.Tensor, what: str) -> np.ndarray:
    pooled = _in_pytorch(model) if len(images) < EXPORT_PAYS_OFF else _on_onnx_runtime(model, images[:2])
    out = []
    batches = range(0, len(images), PHOTOS_PER_BATCH)
    for start in tqdm(batches, desc=f"features of {what}", unit="batch", disable=None, leave=False):
        batch = images[start : start + PHOTOS_PER_BATCH].numpy().astype(np.float32) / 255
        out.append(pooled(batch).astype(np.float16))
    return np.concatenate(out)


def _in_pytorch(model: PhotoTransfer):
    model = model.eval()

    @torch.no_grad()
    def pooled(batch: np.ndarray) -> np.ndarray:
        return model.pooled(torch.from_numpy(batch)).numpy()

    return pooled


def _on_onnx_runtime(model: PhotoTransfer, example: torch.Tensor):
    import onnxruntime as ort

    proto = onnx_program(_Pooled(model).eval(), example.float() / 255)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: batch})[0]


def split_logits(model: torch.nn.Module, split: Split, batch_size: int, device: torch.device) -> torch.Tensor:
    """Logits over a split: a pretrained photo model's head on the split's backbone features (cached, computed on
    ONNX Runtime: minutes faster than the whole model in PyTorch), any other model on the images."""
    if isinstance(model, PhotoTransfer):
        return predict_logits(HeadOnFeatures(model), features(model, split, "photos").images, batch_size, device)
    return predict_logits(model, split.images, batch_size, device)


def fit_standardisation(model: PhotoTransfer, train: Split) -> None:
    """The head's shift and scale from the training photos' features."""
    flat = train.images.flatten(0, 1)
    mean = torch.zeros(flat.shape[1], dtype=torch.float64)
    square = torch.zeros_like(mean)
    for start in range(0, len(flat), 4096):
        chunk = flat[start : start + 4096].double()
        mean += chunk.sum(0)
        square += (chunk * chunk).sum(0)
    mean /= len(flat)
    std = (square / len(flat) - mean * mean).clamp_min(0).sqrt()
    head = model.head
    if not isinstance(head, MLPHead):
        raise TypeError(f"{type(head).__name__} is not trained on features")
    head.standardise.shift.copy_(mean.float())
    head.standardise.scale.copy_(1 / (std.float() + 1e-3))


def imagenet_class_names() -> list[str]:
    """The 1,000 ImageNet classes in the classifier's order, each as its WordNet names ("jersey, T-shirt, ...")."""
    text = resources.files("fashionclf").joinpath("imagenet", "classes.txt").read_text(encoding="utf-8")
    return [line.split("\t", 1)[1] for line in text.splitlines() if line.strip()]


def set_votes(head: ImageNetVote, classes: tuple[str, ...], map_path: str | None) -> dict[str, list[str]]:
    """The zero-shot head's votes from the class map (the shipped one when `map_path` is None); returns, per class,
    the ImageNet classes it is scored by. A class the map has no entry for is one error naming it."""
    entries = map_entries(classes, map_path)
    names = imagenet_class_names()
    votes = torch.zeros(len(names), len(classes))
    for column, name in enumerate(classes):
        for imagenet in entries[name]["imagenet"]:
            votes[_imagenet_index(imagenet, names, map_path), column] = 1
    head.vote.votes.copy_(votes)
    return {name: entries[name]["imagenet"] for name in classes}


def map_entries(classes: tuple[str, ...], map_path: str | None) -> dict[str, dict]:
    """Each class's entry in the class map (the shipped one when `map_path` is None), found by its garment word or
    an alias; a class with none is one error naming it."""
    mapping = _read_map(map_path)
    entries = {}
    for name in classes:
        entry = _entry_for(name, mapping)
        if entry is None:
            raise FashionClfError(f"{map_path or IMAGENET_MAP}: no entry for the class {name!r}; add one (a garment "
                                  "word with its aliases and ImageNet classes)")  # fmt: skip
        entries[name] = entry
    return entries


def _read_map(map_path: str | None) -> dict[str, dict]:
    try:
        if map_path is None:
            text = resources.files("fashionclf").joinpath("imagenet", IMAGENET_MAP).read_text(encoding="utf-8")
        else:
            text = Path(map_path).read_text(encoding="utf-8")
        mapping = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FashionClfError(f"{map_path}: not a readable class map ({exc})") from None
    if not isinstance(mapping, dict) or not all(
        isinstance(entry, dict) and isinstance(entry.get("imagenet"), list)
        and isinstance(entry.get("fashion_mnist", []), list)
        for entry in mapping.values()
    ):  # fmt: skip
        raise FashionClfError(f'{map_path}: a class map is {{word: {{"aliases": [...], "imagenet": [...], '
                              f'"fashion_mnist": [...] (optional)}}}}')  # fmt: skip
    return mapping


def _normal(word: str) -> str:
    return "".join(character for character in word.lower() if character.isalnum())


def _entry_for(name: str, mapping: dict[str, dict]) -> dict | None:
    wanted = _normal(name)
    for word, entry in mapping.items():
        if wanted in {_normal(word), *(_normal(alias) for alias in entry.get("aliases", []))}:
            return entry
    return None


def _imagenet_index(wanted: str, names: list[str], map_path: str | None) -> int:
    """An ImageNet class by its full name or its first name (as the map writes it)."""
    matches = [i for i, name in enumerate(names) if wanted in (name, name.split(",")[0].strip())]
    if len(matches) != 1:
        problem = "no ImageNet class is called" if not matches else "several ImageNet classes are called"
        raise FashionClfError(f"{map_path or IMAGENET_MAP}: {problem} {wanted!r}")
    return matches[0]
