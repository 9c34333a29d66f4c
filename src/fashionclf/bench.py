"""Inference benchmark: every model file of `fashionclf quantize` on its backend, measured side by side.

The rows are measured in interleaved rounds (each round times every row), so a burst of load on a shared
machine spreads over all rows instead of falling on one. Timings are printed and saved, never asserted.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import torch
from rich.table import Table
from tqdm import tqdm

from fashionclf import plots
from fashionclf.analysis import forward_flops
from fashionclf.backends import latencies, open_runner
from fashionclf.errors import FashionClfError
from fashionclf.models import create_model, example_input
from fashionclf.rundir import RunDir, locked, open_run, quantization_is_current, read_json, write_json
from fashionclf.runtime import LARGE_BATCH

PEERS = {
    "eager_fp32": ("fp32", "eager"),
    "ort_fp32": ("fp32", "onnxruntime"),
    "ort_int8": ("ort-static", "onnxruntime"),
}


def bench_run(run_dir: Path, rounds: int = 5, single_calls: int = 60, batch_calls: int = 6) -> dict:
    """Latency at batch 1 and throughput at batch 256 of every model file; writes bench.json and a figure."""
    run = open_run(run_dir)
    quantization = _current_quantization(run)
    model = quantization["model"]
    rows = _rows(run.root, quantization)
    spec = rows[0]["_runner"].spec
    single, batch = example_input(spec, 1), example_input(spec, LARGE_BATCH)
    for _ in tqdm(range(rounds), desc="bench rounds", unit="round", disable=None, leave=False):
        for row in rows:
            row["_single"] += latencies(row["_runner"], single, single_calls)
            row["_batch"] += latencies(row["_runner"], batch, batch_calls)
    flops = forward_flops(create_model(model, spec), spec.input_size)
    for row in rows:
        _summarise(row, flops)
    _add_ratios(rows)
    result = {
        "model": model,
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "flops_per_image": flops,
        "large_batch": LARGE_BATCH,
        "calls": {"single": rounds * single_calls, "batch": rounds * batch_calls},
        "rows": rows,
        "best": {"fp32": _best(rows, "fp32"), "int8": _best(rows, quantization["best_int8"])},
    }
    result["goals"] = goals(result, quantization)
    with locked(run.root, "fashionclf bench"):
        write_json(run.bench, result)
        plots.bench_bars(rows, run.figures / "bench.png")
    return result


def _current_quantization(run: RunDir) -> dict:
    if not run.quantization.is_file():
        raise FashionClfError(f"{run.root}: not quantized yet; run fashionclf quantize {run.root} first")
    quantization = read_json(run.quantization)
    if not quantization_is_current(run, quantization):
        raise FashionClfError(
            f"{run.root}: the quantized models were made from an earlier checkpoints/best.pt; "
            f"run fashionclf quantize {run.root} again"
        )
    return quantization


def _rows(root: Path, quantization: dict) -> list[dict]:
    rows = []
    for method, result in quantization["methods"].items():
        for backend, entry in result["files"].items():
            runner = open_runner(root / entry["path"])
            rows.append(
                {
                    "method": method,
                    "backend": backend,
                    "precision": "fp32" if method == "fp32" else "int8",
                    "path": entry["path"],
                    "bytes": entry["bytes"],
                    "accuracy": entry["accuracy"],
                    "agreement": entry["agreement"],
                    "_runner": runner,
                    "_single": [],
                    "_batch": [],
                }
            )
    return rows


def _summarise(row: dict, flops: int) -> None:
    single, batch = sorted(row.pop("_single")), sorted(row.pop("_batch"))
    del row["_runner"]
    row["latency_us"] = {
        "median": statistics.median(single) * 1e6,
        "p99": single[min(len(single) - 1, round(0.99 * (len(single) - 1)))] * 1e6,
    }
    row["images_per_s"] = LARGE_BATCH / statistics.median(batch)
    row["gflops"] = row["images_per_s"] * flops / 1e9


def _find(rows: list[dict], method: str, backend: str) -> dict | None:
    return next((r for r in rows if r["method"] == method and r["backend"] == backend), None)


def _add_ratios(rows: list[dict]) -> None:
    """Throughput ratio (x faster at batch 256) and latency ratio (x faster at batch 1) to each peer."""
    for row in rows:
        row["vs"] = {}
        for peer_name, key in PEERS.items():
            peer = _find(rows, *key)
            if peer is not None:
                row["vs"][peer_name] = {
                    "throughput": row["images_per_s"] / peer["images_per_s"],
                    "latency": peer["latency_us"]["median"] / row["latency_us"]["median"],
                }


def _best(rows: list[dict], method: str | None) -> dict:
    """What the inference path serves for a method (fp32, or the int8 method quantize chose for inference): its
    fastest file at batch 1 and at batch 256."""
    candidates = [r for r in rows if r["method"] == method]
    if not candidates:
        return {}
    single = min(candidates, key=lambda r: r["latency_us"]["median"])
    batch = max(candidates, key=lambda r: r["images_per_s"])
    return {
        "single": {"method": single["method"], "backend": single["backend"], "latency_us": single["latency_us"]},
        "batch": {"method": batch["method"], "backend": batch["backend"], "images_per_s": batch["images_per_s"]},
    }


def goals(result: dict, quantization: dict) -> dict:
    """The optimization issue's goals, each with the measured ratio it was judged on."""
    rows, best = result["rows"], result["best"]
    ort_fp32, ort_int8 = _find(rows, "fp32", "onnxruntime"), _find(rows, "ort-static", "onnxruntime")
    fp32_onnx = _find(rows, "fp32", "onnxruntime")
    method = quantization.get("best_int8")
    checks = {}
    if method and best.get("int8") and ort_fp32 and ort_int8:
        int8 = quantization["methods"][method]
        smallest = min(entry["bytes"] for entry in int8["files"].values())
        checks["int8_accuracy_drop_points"] = _goal(
            100 * (quantization["methods"]["fp32"]["accuracy"] - int8["accuracy"]), "<=", 0.3
        )
        checks["int8_size_vs_fp32"] = _goal(smallest / fp32_onnx["bytes"], "<=", 0.30)
        checks["int8_throughput_vs_ort_int8"] = _goal(
            best["int8"]["batch"]["images_per_s"] / ort_int8["images_per_s"], ">=", 1.2
        )
        checks["int8_latency_vs_ort_fp32"] = _goal(
            best["int8"]["single"]["latency_us"]["median"] / ort_fp32["latency_us"]["median"], "<=", 1.0
        )
    if best.get("fp32") and ort_fp32:
        checks["fp32_throughput_vs_ort_fp32"] = _goal(
            best["fp32"]["batch"]["images_per_s"] / ort_fp32["images_per_s"], ">=", 1.0
        )
    return checks


def _goal(value: float, relation: str, target: float) -> dict:
    met = value <= target if relation == "<=" else value >= target
    return {"value": value, "goal": f"{relation} {target}", "met": met}


def bench_table(result: dict) -> Table:
    table = Table(title=f"Inference on {result['cpu_capability']} CPU, {result['threads']} threads")
    columns = ("method", "backend", "MB", "accuracy", "b1 median us", "b1 p99 us", f"b{LARGE_BATCH} img/s", "GFLOP/s",
               "x eager fp32", "x ORT fp32", "x ORT int8")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column in ("method", "backend") else "right")
    for row in result["rows"]:
        ratios = [f"{row['vs'][p]['throughput']:.2f}" if p in row["vs"] else "" for p in PEERS]
        table.add_row(
            row["method"], row["backend"], f"{row['bytes'] / 1e6:.2f}", f"{row['accuracy']:.2%}",
            f"{row['latency_us']['median']:,.0f}", f"{row['latency_us']['p99']:,.0f}",
            f"{row['images_per_s']:,.0f}", f"{row['gflops']:.1f}", *ratios,
        )  # fmt: skip
    return table


def goals_table(result: dict) -> Table:
    table = Table(title="Goals")
    for column in ("goal", "measured", "target", "met"):
        table.add_column(column)
    for name, goal in result["goals"].items():
        table.add_row(name, f"{goal['value']:.3f}", goal["goal"], "yes" if goal["met"] else "NO")
    return table
