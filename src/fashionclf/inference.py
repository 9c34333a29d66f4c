"""Inference: a classifier from a run directory, a folder `fashionclf export` wrote, or a model file, and pictures
classified in batches.

Pictures are brought into the model's domain by `fashionclf.preprocess`; a run directory serves its int8 model when
one agrees with fp32, on the backends measured fastest on this machine.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from fashionclf.backends import AGREEMENT_GOAL, dispatch, open_runner
from fashionclf.errors import FashionClfError, FashionClfWarning
from fashionclf.export import is_export, open_export
from fashionclf.files import atomic_write
from fashionclf.models import ModelSpec
from fashionclf.networks import predict_logits
from fashionclf.preprocess import open_image, to_picture
from fashionclf.rundir import RunDir, existing_model, quantization_is_current, read_json

LogitsFunction = Callable[[torch.Tensor], torch.Tensor]  # float32 (N, C, H, W) in [0, 1] -> logits (N, classes)


@dataclass(frozen=True)
class Classifier:
    """A model as a function to its logits (a runner of backends.py, or a module); `description` names the model
    file and backend, `spec` its classes and input."""

    logits_of: LogitsFunction
    description: str
    spec: ModelSpec = ModelSpec()

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities (N, classes) for uint8 model inputs (N, C, H, W), as `spec.input.prepare` makes them."""
        logits = predict_logits(self.logits_of, torch.from_numpy(np.ascontiguousarray(images)), len(images))
        return torch.softmax(logits, dim=1).numpy()


PRECISIONS = ("auto", "fp32", "int8")


def load_classifier(path: Path, precision: str = "auto", preprocessing: str | None = None) -> Classifier:
    """A classifier from a model file this project wrote, or from a run directory or an exported folder: there, on
    the files and backends measured fastest on this machine for single images and for batches, of fp32 and the int8
    model of `fashionclf quantize` that agrees with it (auto: both, as int8 outruns fp32 on some CPUs and not on
    others; int8; fp32). `preprocessing` replaces the model's own."""
    classifier = _classifier(Path(path), precision)
    return replace(classifier, spec=classifier.spec.using(preprocessing))


def _classifier(path: Path, precision: str) -> Classifier:
    if precision not in PRECISIONS:
        raise FashionClfError(f"--precision: unknown {precision!r}; known: {', '.join(PRECISIONS)}")
    existing_model(path)
    if path.is_file():
        runner = open_runner(path)
        return Classifier(logits_of=runner, description=f"{runner.model} {runner.label} ({path})", spec=runner.spec)
    if is_export(path):
        chosen = open_export(path, precision)
    else:
        chosen = dispatch(run_model_files(RunDir(path), precision))
    return Classifier(logits_of=chosen, description=chosen.description, spec=chosen.small.spec)


def run_model_files(run: RunDir, precision: str) -> list[tuple[Path, str]]:
    """The (file, backend) pairs `precision` allows: fp32's, the agreeing int8 model's, or both (auto), each on every
    backend that runs it. Quantized files made from an earlier best.pt are not used: fp32 serves, with a warning,
    until quantize runs again."""
    quantization = read_json(run.quantization) if run.quantization.is_file() else None
    if quantization is not None and not quantization_is_current(run, quantization):
        stale = f"{run.root}: the quantized models were made from an earlier checkpoints/best.pt"
        if precision == "int8":
            raise FashionClfError(f"{stale}; run fashionclf quantize {run.root}")
        if precision == "auto":
            warnings.warn(f"{stale}; serving fp32 until you run fashionclf quantize {run.root}", FashionClfWarning, 2)
        quantization = None
    if quantization is None:
        if precision == "int8":
            raise FashionClfError(f"{run.root}: no int8 model yet; run fashionclf quantize {run.root}")
        return [(run.best_checkpoint, "eager")]
    int8 = quantization["best_int8"]
    if int8 is None and precision == "int8":
        raise FashionClfError(f"{run.root}: no int8 model agrees with fp32 on {AGREEMENT_GOAL:.1%} of the test set")
    methods = {"fp32": ["fp32"], "int8": [int8], "auto": ["fp32", int8] if int8 else ["fp32"]}[precision]
    entries = [quantization["methods"][method]["files"] for method in methods]
    return [(run.root / entry["path"], backend) for files in entries for backend, entry in files.items()]


def top_k(probabilities: np.ndarray, k: int, classes: tuple[str, ...]) -> list[list[dict]]:
    order = np.argsort(-probabilities, axis=1)[:, :k]
    return [
        [{"class": classes[i], "index": int(i), "probability": float(row[i])} for i in indices]
        for row, indices in zip(probabilities, order, strict=True)
    ]


@dataclass
class Prediction:
    name: str
    top: list[dict]
    model_input: np.ndarray  # the uint8 image (C, H, W) the model saw


def predict_files(
    classifier: Classifier, files: list[Path], k: int = 3, batch_size: int = 256
) -> Iterator[Prediction | tuple[str, str]]:
    """Predictions in batches, in order; a file that cannot be read yields (name, problem) instead."""
    for start in range(0, len(files), batch_size):
        batch: list[tuple[str, np.ndarray]] = []
        for path in files[start : start + batch_size]:
            try:
                batch.append((str(path), classifier.spec.input.prepare(open_image(path, str(path)))))
            except FashionClfError as exc:
                yield str(path), str(exc).removeprefix(f"{path}: ")
        if batch:
            inputs = np.stack([array for _, array in batch])
            ranked = top_k(classifier.probabilities(inputs), k, classifier.spec.classes)
            for (name, array), top in zip(batch, ranked, strict=True):
                yield Prediction(name, top, array)


def save_model_input(prediction: Prediction, folder: Path) -> Path:
    """Write the image the model saw, named after the input file."""
    target = Path(folder) / f"{Path(prediction.name).stem}.png"
    image = to_picture(prediction.model_input)
    atomic_write(target, lambda tmp: image.save(tmp, format="PNG"))
    return target
