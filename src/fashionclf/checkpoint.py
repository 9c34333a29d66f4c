"""The checkpoint format: a dictionary saved with torch.save that describes itself, so the model is rebuilt from the
file alone (docs/formats.md):

    {"format": "fashionclf-checkpoint", "model": registry name, "model_args": {...}, "spec": ModelSpec record,
     "state_dict": ..., and per kind: "epoch", "metrics" (best.pt, last.pt), the resume state (last.pt),
     "quantization" (dynamic.pt)}

Files are read only with weights_only=True; one that needs code to unpickle, or that we did not write, is refused.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from fashionclf.errors import FashionClfError
from fashionclf.files import atomic_write
from fashionclf.models import ModelSpec, create_model

CHECKPOINT_FORMAT = "fashionclf-checkpoint"
CHECKPOINT_KEYS = ("format", "model", "model_args", "state_dict")
# What last.pt adds for --resume; "scheduler" and "ema" are None where the run has none.
RESUME_KEYS = ("optimizer", "scheduler", "ema", "rng", "history", "best_val_accuracy", "next_epoch")


def model_header(model: str, model_args: dict, spec: ModelSpec) -> dict:
    """What every checkpoint starts with: the model's registry name, the arguments it was built with, and its spec."""
    return {"format": CHECKPOINT_FORMAT, "model": model, "model_args": model_args, "spec": spec.as_dict()}


def recorded_spec(record: dict) -> ModelSpec:
    """The spec a checkpoint or a run's config.json records (Fashion-MNIST's for files of earlier versions)."""
    return ModelSpec.from_dict(record.get("spec"))


def build_model(record: dict) -> nn.Module:
    """The untrained model a record describes (a checkpoint, or a run's settings with its spec): the registry's
    `model`, built with its `model_args` for its spec."""
    return create_model(record["model"], recorded_spec(record), **record["model_args"])


def save_checkpoint(path: Path, checkpoint: dict) -> None:
    """Save a self-describing checkpoint: {"format", "model", "model_args", "state_dict", ...}."""
    missing = [key for key in CHECKPOINT_KEYS if key not in checkpoint]
    if missing:
        raise ValueError(f"checkpoint lacks {missing}")
    atomic_write(path, lambda tmp: torch.save(checkpoint, tmp))


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    """Load with weights_only=True; a file that needs code to unpickle, or that we did not write, is refused."""
    path = Path(path)
    if not path.is_file():
        raise FashionClfError(f"{path}: checkpoint does not exist")
    _register_quantized_tensors(path)
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - garbage input makes torch.load raise almost anything (KeyError, ...)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FashionClfError(f"{path}: not a loadable fashionclf checkpoint ({reason})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise FashionClfError(f"{path}: not a fashionclf checkpoint (no {CHECKPOINT_FORMAT!r} format tag)")
    _require(checkpoint, CHECKPOINT_KEYS, f"{path}: checkpoint lacks")
    return checkpoint


def load_resumable(path: Path) -> dict:
    """A last.pt with everything --resume restores, on the CPU (the RNG state must stay a CPU tensor)."""
    checkpoint = load_checkpoint(path)
    _require(checkpoint, RESUME_KEYS, f"{path}: not a resumable last.pt; it lacks")
    return checkpoint


def _require(checkpoint: dict, keys: Iterable[str], problem: str) -> None:
    if missing := [key for key in keys if key not in checkpoint]:
        raise FashionClfError(f"{problem} {', '.join(missing)}")


def _register_quantized_tensors(path: Path) -> None:
    """A quantized checkpoint holds torchao's int8 tensors, which weights_only loading accepts once torchao is
    imported; it is imported only then, as that costs seconds."""
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [name for name in archive.namelist() if name.endswith("data.pkl")]
            if not pickles or b"torchao" not in archive.read(pickles[0]):
                return
    except (zipfile.BadZipFile, OSError):
        return  # torch.load reports the file's problem
    import_torchao()


def import_torchao() -> None:
    """Import torchao without its start-up warnings about GPU kernels that a CPU build of torch cannot load."""
    loggers = [logging.getLogger(name) for name in ("torchao", "torch.utils._pytree")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        import torchao.quantization  # noqa: F401
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def model_from_checkpoint(checkpoint: dict, path: Path | str = "checkpoint") -> nn.Module:
    """Rebuild the model the checkpoint describes and load its weights (in eval mode)."""
    model = build_model(checkpoint)
    try:
        # A quantized checkpoint's weights are tensor subclasses that replace the float parameters.
        model.load_state_dict(checkpoint["state_dict"], assign="quantization" in checkpoint)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise FashionClfError(f"{path}: weights do not fit model {checkpoint['model']!r} ({first})") from None
    return model.eval()


def load_model(path: Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    checkpoint = load_checkpoint(path, map_location)
    return model_from_checkpoint(checkpoint, path), checkpoint
