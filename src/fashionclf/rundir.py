"""The run directory: the contract between stages, and the only place that knows its layout.

    RUN_DIR/
      config.json          every setting, library versions, device, data source and checksums
      checkpoints/last.pt  model + optimizer + RNG state after the last finished epoch (for --resume)
      checkpoints/best.pt  model weights of the epoch with the best validation accuracy
      history.csv, .json   per-epoch train/validation loss and accuracy
      train.log            what the trainer printed, appended across resumes
      metrics.json         test-set evaluation
      analysis.json        receptive field, FLOPs and MACs, per-layer timings (fashionclf analyze)
      quantized/           int8 and ONNX models with quantization.json (fashionclf quantize)
      bench.json           latency and throughput of every model file and backend (fashionclf bench)
      finetune.json        a fine-tuned run: accuracy before and after, on held-out new data and Fashion-MNIST
      evaluations/NAME/    evaluate --data: metrics.json and figures on other data
      figures/*.png        plots
      report.md, .html     the report
      .lock                held by the process writing into the run, with its name and pid

Every file is written to a temporary name beside its target and renamed, so a crash never leaves a half file.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fashionclf.errors import FashionClfError
from fashionclf.files import atomic_write, file_sha256, writing
from fashionclf.models import ModelSpec, create_model

CHECKPOINT_FORMAT = "fashionclf-checkpoint"
CHECKPOINT_KEYS = ("format", "model", "model_args", "state_dict")
LOCK_NAME = ".lock"
_held: dict[Path, int] = {}  # run directories this process holds, and how deep


@dataclass(frozen=True)
class RunDir:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def last_checkpoint(self) -> Path:
        return self.root / "checkpoints" / "last.pt"

    @property
    def best_checkpoint(self) -> Path:
        return self.root / "checkpoints" / "best.pt"

    @property
    def history_csv(self) -> Path:
        return self.root / "history.csv"

    @property
    def history_json(self) -> Path:
        return self.root / "history.json"

    @property
    def log(self) -> Path:
        return self.root / "train.log"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def analysis(self) -> Path:
        return self.root / "analysis.json"

    @property
    def quantized(self) -> Path:
        return self.root / "quantized"

    @property
    def quantization(self) -> Path:
        return self.quantized / "quantization.json"

    @property
    def bench(self) -> Path:
        return self.root / "bench.json"

    @property
    def finetune(self) -> Path:
        return self.root / "finetune.json"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    @property
    def report_md(self) -> Path:
        return self.root / "report.md"

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"


def open_run(path: Path) -> RunDir:
    """A finished or interrupted run; refuses a directory that no training wrote."""
    run = RunDir(Path(path))
    if not run.root.is_dir():
        raise FashionClfError(f"{run.root}: run directory does not exist")
    if not run.config.is_file():
        raise FashionClfError(f"{run.root}: not a run directory (no config.json)")
    return run


@contextmanager
def locked(root: Path, holder: str) -> Iterator[None]:
    """Hold the run directory for writing; a second writer, in this or another process, is refused with a message
    naming the first. The lock is the kernel's (flock on RUN_DIR/.lock), so it ends with the process that holds it:
    a lock left by a killed run is simply taken. Nested calls in one process share the lock."""
    root = Path(root).resolve()
    if root in _held:
        _held[root] += 1
        try:
            yield
        finally:
            _held[root] -= 1
        return
    with writing(root):  # a read-only run, or --out naming a file: one line naming the run
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        since = time.strftime("%Y-%m-%d %H:%M:%S")
        with writing(root):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{holder} (pid {os.getpid()} on {socket.gethostname()}, since {since})\n".encode(), 0)
    except BlockingIOError:
        other = os.pread(fd, 1024, 0).decode("utf-8", "replace").strip() or "another process"
        os.close(fd)
        raise FashionClfError(f"{root}: in use by {other}; wait for it to finish, or stop it") from None
    except FashionClfError:
        os.close(fd)
        raise
    _held[root] = 1
    try:
        yield
    finally:
        del _held[root]
        os.close(fd)  # releases the lock


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2) + "\n")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FashionClfError(f"{path}: file does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FashionClfError(f"{path}: not valid JSON ({exc})") from None


def quantization_is_current(run: RunDir, quantization: dict) -> bool:
    """Whether the quantized files were made from the run's best.pt as it is now (training on with --resume can
    change it)."""
    return quantization.get("checkpoint_sha256") == file_sha256(run.best_checkpoint)


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
    missing = [key for key in CHECKPOINT_KEYS if key not in checkpoint]
    if missing:
        raise FashionClfError(f"{path}: checkpoint lacks {', '.join(missing)}")
    return checkpoint


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


def spec_of(checkpoint: dict) -> ModelSpec:
    """What the checkpoint's model expects and answers (Fashion-MNIST's for checkpoints of earlier versions)."""
    return ModelSpec.from_dict(checkpoint.get("spec"))


def model_from_checkpoint(checkpoint: dict, path: Path | str = "checkpoint") -> nn.Module:
    """Rebuild the model the checkpoint describes and load its weights (in eval mode)."""
    model = create_model(checkpoint["model"], spec_of(checkpoint), **checkpoint["model_args"])
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


def run_spec(run: RunDir) -> ModelSpec:
    """What the run's model expects and answers, as config.json records it (Fashion-MNIST's for older runs)."""
    return ModelSpec.from_dict(read_json(run.config).get("spec"))


def run_data(run: RunDir) -> Path | None:
    """The --data the run was trained with, so later stages read the same source."""
    configured = read_json(run.config)["train"].get("data")
    return Path(configured) if configured else None


def read_history(run: RunDir) -> list[dict]:
    return read_json(run.history_json) if run.history_json.exists() else []
