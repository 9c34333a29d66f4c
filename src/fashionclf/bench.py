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
from fashionclf.analysis import calls_within, forward_flops
from fashionclf.backends import AGREEMENT_GOAL, Runner, latencies, open_runner
from fashionclf.errors import FashionClfError
from fashionclf.networks import example_input, large_batch
from fashionclf.rundir import RunDir, locked, open_run, quantization_is_current, read_json, run_model, write_json
from fashionclf.runtime import Cpu, cpu

# The peers: what a user gets from the runtimes themselves. fp32: our fp32 ONNX file on ONNX Runtime or OpenVINO;
# int8: each runtime's own post-training int8 of it (ONNX Runtime's static QDQ, OpenVINO's NNCF), on any backend.
PEER_FP32_BACKENDS = ("onnxruntime", "openvino")
PEER_INT8_METHODS = ("ort-static", "ov-static")
WARMUP = 3  # calls before a row's timed calls in each round: each backend builds its kernels, caches refill
# Seconds of calls over all rows and rounds, warm-ups included. The seed's FashionCNN needs 30-45 s of them on 2
# AVX2 cores, so it gets every round and call asked for even on a machine twice as busy; EfficientNet-Lite0 on 384-px
# photos (6-30 s a call at batch 18 in eager mode) would need most of an hour, and gets fewer (see `_plan`).
BUDGET_S = 120.0


def bench_run(
    run_dir: Path, rounds: int = 5, single_calls: int = 60, batch_calls: int = 6, budget_s: float | None = None
) -> dict:
    """Latency at batch 1 and throughput at the model's large batch (256 for 28x28 inputs) of every model file;
    writes bench.json and a figure. The rounds and calls asked for are taken where they fit in `budget_s` (None:
    BUDGET_S), else fewer (see `_plan`)."""
    budget_s = BUDGET_S if budget_s is None else budget_s
    run = open_run(run_dir)
    quantization = _current_quantization(run)
    model = quantization["model"]
    rows = _rows(run.root, quantization)
    spec = rows[0]["_runner"].spec
    size = large_batch(spec)
    inputs = {"single": example_input(spec, 1), "batch": example_input(spec, size)}
    timing = _plan(rows, inputs, rounds, single_calls, batch_calls, budget_s)
    calls = _fewest_calls(rows, timing["rounds"])
    for _ in tqdm(range(timing["rounds"]), desc="bench rounds", unit="round", disable=None, leave=False):
        for row in rows:
            for kind, images in inputs.items():
                row[f"_{kind}"] += latencies(row["_runner"], images, row["_calls"][kind], timing["warmup_calls"])
    flops = forward_flops(run_model(run), spec.input_size)
    for row in rows:
        _summarise(row, flops, size)
    peers = {
        "fp32": [r for r in rows if _is_peer_fp32(r)],
        "int8": [r for r in rows if r["method"] in PEER_INT8_METHODS],
    }
    _add_ratios(rows, peers)
    result = {
        "model": model,
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu": cpu().as_dict(),
        "runtimes": runtimes(),
        "flops_per_image": flops,
        "large_batch": size,
        "calls": calls,
        "timing": timing,
        "rows": rows,
        "best": {"fp32": _best(rows, "fp32"), "int8": _best(rows, quantization["best_int8"])},
        "best_peer": {name: _fastest(group) for name, group in peers.items()},
    }
    result["goals"] = goals(result, quantization)
    result["int8_verdict"] = int8_verdict(rows, quantization["best_int8"], cpu(), size)
    with locked(run.root, "fashionclf bench"):
        write_json(run.bench, result)
        plots.bench_bars(rows, run.figure("bench"))
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


def _plan(
    rows: list[dict], inputs: dict[str, torch.Tensor], rounds: int, single_calls: int, batch_calls: int, budget_s: float
) -> dict:
    """Each row's calls a round (in `_calls`) and the rounds and warm-up calls, after warming every row up once.

    What was asked is kept where the warm-up's timings say it fits in what is left of `budget_s`. Else each batch
    size gets half the budget, its warm-up included: one call of every row, then an equal share of what is left to
    each row, as many more calls as the share holds; in as many rounds as the row with the fewest calls can fill,
    and no warm-up calls in them (every backend is warm by then). So bench takes about its budget, or where one
    call of every file at the large batch takes longer, the warm-up and those calls (batch 1 keeps its half)."""
    spent = dict.fromkeys(inputs, 0.0)
    for row in rows:
        # A package padding one image to a whole batch costs a batch per call: as many calls as for batches.
        row["_calls"] = {"single": batch_calls if row["_runner"].fixed_batch else single_calls, "batch": batch_calls}
        row["_seconds"] = {}
        for kind, images in inputs.items():
            seconds = _warm_up(row["_runner"], images, budget_s / (4 * len(rows)))
            row["_seconds"][kind] = seconds[-1]
            spent[kind] += sum(seconds)
    asked_s = rounds * sum((WARMUP + row["_calls"][k]) * row["_seconds"][k] for row in rows for k in inputs)
    timing = {
        "rounds": rounds,
        "rounds_asked": rounds,
        "warmup_calls": WARMUP,
        "batch_sizes": [len(images) for images in inputs.values()],
        "budget_s": budget_s,
        "warm_up_s": sum(spent.values()),
        "asked_s_estimate": asked_s,
        "within_budget": asked_s <= budget_s - sum(spent.values()),
    }
    if timing["within_budget"]:
        return timing
    left = {k: budget_s / len(inputs) - spent[k] - sum(row["_seconds"][k] for row in rows) for k in inputs}
    totals = [
        {k: 1 + calls_within(left[k] / len(rows), row["_seconds"][k], rounds * row["_calls"][k] - 1, 0) for k in inputs}
        for row in rows
    ]
    taken = min(rounds, *(calls for total in totals for calls in total.values()))
    for row, total in zip(rows, totals, strict=True):
        row["_calls"] = {k: calls // taken for k, calls in total.items()}
    return {**timing, "rounds": taken, "warmup_calls": 0}


def _warm_up(runner: Runner, images: torch.Tensor, budget_s: float) -> list[float]:
    """Seconds of WARMUP warm-up calls, fewer where they are long (the first builds the backend's kernels; after
    it, a photo model's call takes seconds and the next is warm enough): the last one is a warm call's time."""
    seconds = latencies(runner, images, 1, warmup=0)
    return seconds + latencies(runner, images, calls_within(budget_s - seconds[0], seconds[0], WARMUP - 1, 0), 0)


def _fewest_calls(rows: list[dict], rounds: int) -> dict:
    """The fewest timed calls a file gets at batch 1 (but a package padded to a whole batch) and at the large one."""
    ordinary = [row for row in rows if not row["_runner"].fixed_batch] or rows
    return {
        "single": rounds * min(row["_calls"]["single"] for row in ordinary),
        "batch": rounds * min(row["_calls"]["batch"] for row in rows),
    }


def _rows(root: Path, quantization: dict) -> list[dict]:
    rows = []
    for method, result in quantization["methods"].items():
        for backend, entry in result["files"].items():
            runner = open_runner(root / entry["path"], backend)
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


def _summarise(row: dict, flops: int, size: int) -> None:
    single, batch = sorted(row.pop("_single")), sorted(row.pop("_batch"))
    for scratch in ("_runner", "_calls", "_seconds"):
        del row[scratch]
    row["calls"] = {"single": len(single), "batch": len(batch)}
    row["latency_us"] = {
        "median": statistics.median(single) * 1e6,
        "p99": single[min(len(single) - 1, round(0.99 * (len(single) - 1)))] * 1e6,
    }
    row["images_per_s"] = size / statistics.median(batch)
    row["gflops"] = row["images_per_s"] * flops / 1e9


def _is_peer_fp32(row: dict) -> bool:
    return row["method"] == "fp32" and row["backend"] in PEER_FP32_BACKENDS


def _fastest(rows: list[dict]) -> dict:
    """The fastest of some rows at batch 1 and at the large batch, by method and backend."""
    if not rows:
        return {}
    single = min(rows, key=lambda r: r["latency_us"]["median"])
    batch = max(rows, key=lambda r: r["images_per_s"])
    return {
        "single": {"method": single["method"], "backend": single["backend"], "latency_us": single["latency_us"]},
        "batch": {"method": batch["method"], "backend": batch["backend"], "images_per_s": batch["images_per_s"]},
    }


def _add_ratios(rows: list[dict], peers: dict[str, list[dict]]) -> None:
    """Per row, x faster than PyTorch eager fp32 and than the fastest peer of each precision: throughput at the
    large batch, latency at batch 1 (each against the peer fastest at it)."""
    eager = next(r for r in rows if (r["method"], r["backend"]) == ("fp32", "eager"))
    for row in rows:
        row["vs"] = {"eager_fp32": _ratios(row, eager, eager)}
        for name, group in peers.items():
            if group:
                quickest = min(group, key=lambda r: r["latency_us"]["median"])
                row["vs"][f"best_peer_{name}"] = _ratios(row, max(group, key=lambda r: r["images_per_s"]), quickest)


def _ratios(row: dict, by_throughput: dict, by_latency: dict) -> dict:
    return {
        "throughput": row["images_per_s"] / by_throughput["images_per_s"],
        "latency": by_latency["latency_us"]["median"] / row["latency_us"]["median"],
    }


def runtimes() -> dict:
    """The versions and settings of every runtime timed, so a row can be traced to what produced it."""
    import onnxruntime
    import openvino

    from fashionclf.backends import OPENVINO_CONFIG

    precision = openvino.Core().get_property("CPU", "INFERENCE_PRECISION_HINT")
    return {
        "torch": torch.__version__,
        "onnxruntime": {"version": onnxruntime.__version__, "intra_op_threads": torch.get_num_threads()},
        "openvino": {
            "version": openvino.__version__,
            **OPENVINO_CONFIG,
            "threads": torch.get_num_threads(),
            "inference_precision": str(precision),
        },  # fmt: skip
    }


def _best(rows: list[dict], method: str | None) -> dict:
    """What the inference path serves for a method (fp32, or the int8 method quantize chose for inference): its
    fastest file and backend at batch 1 and at the large batch."""
    return _fastest([r for r in rows if r["method"] == method])


def int8_verdict(rows: list[dict], method: str | None, machine: Cpu, batch: int) -> dict:
    """What int8 buys on this CPU, measured against fp32's fastest file, and what predict and serve use (as they
    do: the fastest of fp32 and the int8 model that agrees with it, for single images and for batches), with a line
    that says so."""
    served = _fastest([r for r in rows if r["method"] in ("fp32", method)])
    verdict = {"cpu": machine.as_dict(), "method": method, "served": served}
    if method is None:
        line = (
            f"this CPU {machine.int8_support}: no int8 model agrees with fp32 on {AGREEMENT_GOAL:.1%} of the evaluated "
            "images; predict and serve use fp32"
        )
        return {**verdict, "line": line}
    int8, fp32 = _best(rows, method), _best(rows, "fp32")
    smallest = {m: min(r["bytes"] for r in rows if r["method"] == m) for m in (method, "fp32")}
    size = smallest[method] / smallest["fp32"]
    throughput = int8["batch"]["images_per_s"] / fp32["batch"]["images_per_s"]
    latency = fp32["single"]["latency_us"]["median"] / int8["single"]["latency_us"]["median"]
    line = (
        f"this CPU {machine.int8_support}: int8 is {1 - size:.0%} smaller than fp32 and "
        f"{_faster_or_slower(throughput)} at batch {batch}, {_faster_or_slower(latency)} at batch 1; "
        f"predict and serve use {_served(served)}"
    )
    measured = {"size_vs_fp32": size, "throughput_vs_fp32": throughput, "latency_speedup_vs_fp32": latency}
    return {**verdict, **measured, "line": line}


def _faster_or_slower(speedup: float) -> str:
    return f"{speedup - 1:.0%} faster" if speedup >= 1 else f"{1 - speedup:.0%} slower"


def _served(served: dict) -> str:
    def name(method: str) -> str:
        return "fp32" if method == "fp32" else f"int8 ({method})"

    single, batch = served["single"]["method"], served["batch"]["method"]
    return name(single) if single == batch else f"{name(single)} for single images and {name(batch)} for batches"


def goals(result: dict, quantization: dict) -> dict:
    """The inference issue's goals, each with the measured ratio it was judged on: against the best peer, the
    fastest of ONNX Runtime and OpenVINO (fp32, and their own int8)."""
    best, peer = result["best"], result["best_peer"]
    method = quantization.get("best_int8")
    checks = {}
    if best.get("fp32") and peer.get("fp32"):
        checks["fp32_throughput_vs_best_peer_fp32"] = _goal(
            best["fp32"]["batch"]["images_per_s"] / peer["fp32"]["batch"]["images_per_s"], ">=", 1.0
        )
    if method and best.get("int8") and peer.get("int8"):
        int8, fp32 = quantization["methods"][method], quantization["methods"]["fp32"]
        smallest = min(entry["bytes"] for entry in int8["files"].values())
        checks["int8_accuracy_drop_points"] = _goal(100 * (fp32["accuracy"] - int8["accuracy"]), "<=", 0.3)
        checks["int8_size_vs_fp32"] = _goal(smallest / fp32["files"]["onnxruntime"]["bytes"], "<=", 0.30)
        checks["int8_throughput_vs_best_peer_int8"] = _goal(
            best["int8"]["batch"]["images_per_s"] / peer["int8"]["batch"]["images_per_s"], ">=", 1.2
        )
        quickest_peer = min(p["single"]["latency_us"]["median"] for p in peer.values() if p)
        checks["int8_latency_vs_fastest_peer"] = _goal(
            best["int8"]["single"]["latency_us"]["median"] / quickest_peer, "<=", 1.0
        )
    return checks


def _goal(value: float, relation: str, target: float) -> dict:
    met = value <= target if relation == "<=" else value >= target
    return {"value": value, "goal": f"{relation} {target}", "met": met}


RATIO_COLUMNS = ("eager_fp32", "best_peer_fp32", "best_peer_int8")


def bench_table(result: dict) -> Table:
    table = Table(title=f"Inference on {result['cpu_capability']} CPU, {result['threads']} threads")
    large = f"b{result['large_batch']} img/s"
    columns = ("method", "backend", "MB", "accuracy", "b1 median us", "b1 p99 us", large, "GFLOP/s", "x eager fp32",
               "x best peer fp32", "x best peer int8")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column in ("method", "backend") else "right")
    for row in result["rows"]:
        ratios = [f"{row['vs'][p]['throughput']:.2f}" if p in row["vs"] else "" for p in RATIO_COLUMNS]
        table.add_row(
            row["method"], row["backend"], f"{row['bytes'] / 1e6:.2f}", f"{row['accuracy']:.2%}",
            f"{row['latency_us']['median']:,.0f}", f"{row['latency_us']['p99']:,.0f}",
            f"{row['images_per_s']:,.0f}", f"{row['gflops']:.1f}", *ratios,
        )  # fmt: skip
    cut = not result["timing"]["within_budget"]
    table.caption = result["int8_verdict"]["line"] + (f"\n{timing_line(result)}" if cut else "")
    return table


def timing_line(result: dict) -> str:
    """What was timed, in a sentence: what was asked, or where it would not fit in bench's time budget, what was."""
    head = f"Timed on a CPU with {result['cpu_capability']}, {result['threads']} threads, in "
    single, batch = result["calls"]["single"], result["calls"]["batch"]
    calls = f"{single} call{'s' * (single != 1)} at batch 1 and {batch} at batch {result['large_batch']}"
    timing = result.get("timing", {"within_budget": True})  # runs benched before the budget: as asked
    if timing["within_budget"]:
        return f"{head}{calls}, interleaved across all rows."
    rounds = timing["rounds"]
    return (
        f"{head}at least {calls} a file, in {rounds} round{'s' if rounds > 1 else ''} of the "
        f"{timing['rounds_asked']} asked: what was asked would have taken about {timing['asked_s_estimate']:,.0f} s, "
        f"over bench's budget of {timing['budget_s']:.0f} s (warm-up included)."
    )


def goals_table(result: dict) -> Table:
    table = Table(title="Goals")
    for column in ("goal", "measured", "target", "met"):
        table.add_column(column)
    for name, goal in result["goals"].items():
        table.add_row(name, f"{goal['value']:.3f}", goal["goal"], "yes" if goal["met"] else "NO")
    return table
