"""The run directory: the contract between stages, and the only place that knows its layout.

    RUN_DIR/
      config.json          every setting, library versions, device, data source and checksums
      checkpoints/last.pt  model + optimizer + RNG state after the last finished epoch (for --resume)
      checkpoints/best.pt  model weights of the epoch with the best validation accuracy
      history.csv, .json   per-epoch train/validation loss and accuracy
      train.log            what the trainer printed, appended across resumes
      metrics.json         test-set evaluation
      analysis.json        receptive field, FLOPs and MACs, per-layer timings (fashionclf analyze)
      quantized/METHOD.*   int8 and ONNX models, with quantization.json (fashionclf quantize)
      bench.json           latency and throughput of every model file and backend (fashionclf bench)
      finetune.json        a fine-tuned run: accuracy before and after, on held-out new data and Fashion-MNIST
      evaluations/NAME/    evaluate --data: metrics.json and figures on other data
      figures/NAME.png     plots (`Figure` names them)
      report.md, .html     the report
      .lock                held by the process writing into the run, with its name and pid

Every file is written to a temporary name beside its target and renamed, so a crash never leaves a half file.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from fashionclf.errors import FashionClfError
from fashionclf.files import atomic_write, file_sha256, writing

if TYPE_CHECKING:
    from torch import nn

LOCK_NAME = ".lock"
Figure = Literal[
    "training_curves",
    "confusion_matrix",
    "per_class",
    "test_samples",
    "confident_mistakes",
    "confused_heat_maps",  # evaluate
    "effective_receptive_field",
    "time_vs_flops",  # analyze
    "bench",
]
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

    def quantized_model(self, method: str, suffix: str) -> Path:
        """A model file of `fashionclf quantize`, named by its method: fp32.onnx, static.pt2, ov-static.xml, ..."""
        return self.quantized / f"{method}{suffix}"

    @property
    def bench(self) -> Path:
        return self.root / "bench.json"

    @property
    def finetune(self) -> Path:
        return self.root / "finetune.json"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    def figure(self, name: Figure) -> Path:
        return self.figures / f"{name}.png"

    @property
    def evaluations(self) -> Path:
        return self.root / "evaluations"

    def evaluation(self, name: str) -> RunDir:
        """Where `evaluate --data` puts its results on other data, laid out as the run's own (metrics.json,
        figures/): evaluations/NAME/."""
        return RunDir(self.evaluations / name)

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


def existing_model(path: Path) -> Path:
    """What predict and serve load: a run directory, an exported folder or a model file; refused where nothing is."""
    if not Path(path).exists():
        raise FashionClfError(f"{path}: model does not exist (give a run directory, an export or a model file)")
    return Path(path)


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


def run_model(run: RunDir) -> nn.Module:
    """The run's model, untrained, as config.json describes it (its registry name, arguments and spec)."""
    from fashionclf.checkpoint import build_model  # torch: not for the command line's checks of a run directory

    config = read_json(run.config)
    return build_model({**config["train"], "spec": config.get("spec")})


def run_data(run: RunDir) -> Path | None:
    """The --data the run was trained with, so later stages read the same source."""
    configured = read_json(run.config)["train"].get("data")
    return Path(configured) if configured else None


def read_history(run: RunDir) -> list[dict]:
    return read_json(run.history_json) if run.history_json.exists() else []
