"""The main job: data -> train -> evaluate -> analyze -> quantize -> bench -> report, in one call, each stage
announced with its time (as log records of the "fashionclf" logger), and a summary of what it measured."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from functools import cache, partial
from pathlib import Path

from fashionclf.analysis import analyze
from fashionclf.bench import bench_run
from fashionclf.checkpoint import recorded_spec
from fashionclf.config import TrainConfig
from fashionclf.datasets import Dataset
from fashionclf.evaluate import evaluate_run
from fashionclf.preprocess import FASHION_MNIST_CLASSES
from fashionclf.quantize import quantize_run
from fashionclf.report import build_report
from fashionclf.rundir import RunDir, locked, read_json
from fashionclf.sources import load_dataset
from fashionclf.train import train

logger = logging.getLogger(__name__)
SEED_REPORT_ACCURACY = 0.9029  # the seed report's test accuracy after its 5 epochs


def run_all(config: TrainConfig, out: Path, progress: bool = True, bench_budget_s: float | None = None) -> dict:
    """Train a new run into `out`, evaluate, analyse, quantize and benchmark it (within `bench_budget_s`, None:
    bench's own), write its report; return the summary (`summary`)."""
    out = Path(out)
    data = cache(partial(load_dataset, config.data, config.input))  # read once, by the first stage
    stages: list[tuple[str, Callable[[], object]]] = [
        ("data: find, verify and read it", data),
        (
            f"train: recipe {config.recipe}",
            lambda: train(_reported(config, data()), out, data=data(), progress=progress),
        ),
        ("evaluate", lambda: evaluate_run(out, device=config.device, data=data())),
        ("analyze: receptive field, FLOPs, per-layer time", lambda: analyze(out)),
        ("quantize: int8 models and ONNX, each measured", lambda: quantize_run(out)),
        ("bench: every model file on its backends", lambda: bench_run(out, budget_s=bench_budget_s)),
        ("report", lambda: build_report(out)),
    ]
    with locked(out, "fashionclf run"):
        for number, (what, work) in enumerate(stages, start=1):
            _stage(f"{number}/{len(stages)}", what, work)
    return summary(RunDir(out))


def _reported(config: TrainConfig, data: Dataset) -> TrainConfig:
    """The settings the main job trains with: a --final recipe on data without a test split keeps its validation
    split out, so that the report measures photos the model never saw (`fashionclf train` makes the final model)."""
    if not (config.final and data.test is None and data.validation is not None):
        return config
    logger.info("the validation split is kept out of training, for the report to measure (--final is for train)")
    return replace(config, final=False)


def _stage(counted: str, what: str, work: Callable[[], object]) -> None:
    logger.info(f"[{counted}] {what} ...")
    started = time.perf_counter()
    work()
    logger.info(f"[{counted}] {what.split(':')[0]}: done in {time.perf_counter() - started:.1f} s")


def summary(run: RunDir) -> dict:
    """What a newcomer wants from a finished run: its accuracy (beside the seed report's, for Fashion-MNIST's
    classes), the int8 model beside the fastest of the runtimes' own int8 (ONNX Runtime's, OpenVINO's) at the large
    batch, what int8 buys on this CPU, the slowest layer, and where the report is."""
    metrics, quantization = read_json(run.metrics), read_json(run.quantization)
    bench, analysis = read_json(run.bench), read_json(run.analysis)
    large = f"batch_{analysis['batch_sizes'][-1]}"
    slowest = max(analysis["layers"], key=lambda row: row["time"][large]["forward_time_share"])
    fashion_mnist = recorded_spec(read_json(run.config)).classes == FASHION_MNIST_CLASSES
    return {
        "accuracy": metrics["accuracy"],
        "split": metrics["data"]["split"],
        "seed_report_accuracy": SEED_REPORT_ACCURACY if fashion_mnist else None,
        "large_batch": bench["large_batch"],
        "int8": _int8_row(quantization, bench, quantization["best_int8"]),
        "int8_verdict": bench["int8_verdict"]["line"],
        "peer_int8": _int8_row(quantization, bench, bench["best_peer"]["int8"].get("batch", {}).get("method")),
        "slowest_layer": {
            "name": slowest["name"],
            "type": slowest["type"],
            "time_share": slowest["time"][large]["forward_time_share"],
            "batch": analysis["batch_sizes"][-1],
        },  # fmt: skip
        "report": str(run.report_html),
    }


def _int8_row(quantization: dict, bench: dict, method: str | None) -> dict | None:
    if method is None:
        return None
    rows = [row for row in bench["rows"] if row["method"] == method]
    fastest = max(rows, key=lambda row: row["images_per_s"])
    return {
        "method": method,
        "accuracy": quantization["methods"][method]["accuracy"],
        "megabytes": min(row["bytes"] for row in rows) / 1e6,
        "images_per_s": fastest["images_per_s"],
        "backend": fastest["backend"],
    }
