"""The main job: data -> train -> evaluate -> analyze -> quantize -> bench -> report, in one call."""

from __future__ import annotations

from pathlib import Path

from fashionclf.analysis import analyze
from fashionclf.bench import bench_run
from fashionclf.config import TrainConfig
from fashionclf.evaluate import evaluate_run
from fashionclf.quantize import quantize_run
from fashionclf.report import build_report
from fashionclf.rundir import locked
from fashionclf.sources import load_dataset
from fashionclf.train import train


def run_all(config: TrainConfig, out: Path, progress: bool = True) -> Path:
    """Train a new run into `out`, evaluate, analyse, quantize and benchmark it, write its report; return
    report.html's path."""
    with locked(out, "fashionclf run"):
        data = load_dataset(Path(config.data) if config.data else None)
        run = train(config, out, data=data, progress=progress)
        evaluate_run(run.root, device=config.device, data=data)
        analyze(run.root)
        quantize_run(run.root)
        bench_run(run.root)
        return build_report(run.root)
