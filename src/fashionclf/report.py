"""The report: the seed report's sections, filled with this run's measured numbers.

Each section is a function of the run directory that returns Markdown, or None when the run has nothing measured
for it yet, so a heading never appears without content. report.html is the same text with a table of contents
and the figures embedded.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Callable
from pathlib import Path

import markdown

from fashionclf.bench import RATIO_COLUMNS, timing_line
from fashionclf.checkpoint import recorded_spec
from fashionclf.config import TrainConfig
from fashionclf.errors import FashionClfError
from fashionclf.explain import CONFUSED_PAIRS, IMAGES_PER_PAIR, confused_pairs
from fashionclf.models import model_entry
from fashionclf.networks import count_parameters, layer_table
from fashionclf.rundir import Figure, RunDir, locked, open_run, read_history, read_json, run_model, write_text
from fashionclf.settings import in_words


def build_report(run_dir: Path) -> Path:
    """Write report.md and a self-contained report.html into the run directory; return report.html's path."""
    run = open_run(run_dir)
    if not run.metrics.exists():
        raise FashionClfError(f"{run.root}: no metrics.json yet; run `fashionclf evaluate {run.root}` first")
    parts = [section(run) for section in SECTIONS]
    text = "\n\n".join(part.strip() for part in parts if part) + "\n"
    with locked(run.root, "fashionclf report"):
        write_text(run.report_md, text)
        write_text(run.report_html, to_html(text, run.root, title=f"fashionclf report: {run.root.name}"))
    return run.report_html


def title(run: RunDir) -> str:
    config, metrics = read_json(run.config), read_json(run.metrics)
    env, split = config["environment"], _evaluated_split(metrics)
    return (
        f"# Clothing classifier: run `{run.root.name}`\n\n"
        f"{split.capitalize()} accuracy **{metrics['accuracy']:.2%}** (loss {metrics['loss']:.4f}) on all "
        f"{metrics['images']:,} images of the {split} split, model `{config['train']['model']}` trained on "
        f"{env['device']} ({env['device_name']}), PyTorch {env['versions']['torch']}. Every number below was "
        f"measured in this run.{_changed_data(metrics)}{_trained_split(metrics)}"
    )


def _evaluated_split(metrics: dict) -> str:
    """The split metrics.json was measured on: "test", or "validation" for data without a test split (runs of
    earlier versions, which do not say, were evaluated on the test split)."""
    return metrics.get("data", {}).get("split", "test")


def _changed_data(metrics: dict) -> str:
    """The warning a reader needs where evaluate was allowed data other than the run's: the split evaluated on may
    hold images the model was trained on."""
    if not metrics.get("data_changed"):
        return ""
    names = ", ".join(f"`{name}`" for name in metrics.get("data_changes", {}))
    return (
        f"\n\n**The data changed since training** ({names}): these metrics were measured with "
        "`--allow-changed-data`, on a split that may hold images the model was trained on."
    )


def measured_on_training_data(metrics: dict) -> bool:
    """Whether the model trained on the split these metrics measured (`--final`, or a training split named)."""
    return bool(metrics.get("data", {}).get("trained_on"))


def _trained_split(metrics: dict) -> str:
    if not measured_on_training_data(metrics):
        return ""
    return (
        f"\n\n**The model trained on the {_evaluated_split(metrics)} split**: these metrics measure what it learnt, "
        "not how it does on pictures it never saw."
    )


def dataset(run: RunDir) -> str:
    config = read_json(run.config)
    data, spec = config["data"], recorded_spec(config)
    kind = {"csv": "Kaggle CSV files", "photos": "a folder of photos sorted by class"}.get(data["origin"])
    source = f"Read from {kind} at `{data['directory']}`" if kind else (
        f"Zalando's article images, read from `{data['directory']}` (found via: {data['origin']}); every file's IDX "
        "header and the SHA-256 of its decompressed bytes were verified before use"
    )  # fmt: skip
    splits = "\n".join(
        f"| {name} | {split['images']:,} | {split['from']} |" for name, split in data.get("splits", {}).items()
    )
    files = "\n".join(f"| `{f['filename']}` | `{f['raw_sha256'][:16]}...` |" for f in data["files"])
    classes = ", ".join(f"{i} {name}" for i, name in enumerate(spec.classes))
    return (
        "## Dataset used\n\n"
        f"{source}. {len(spec.classes)} classes ({classes}), as {spec.input.describe()} images.\n\n"
        "No image is in more than one split; each came from:\n\n"
        f"| split | images | from |\n|---|---:|---|\n{splits}\n\n"
        f"| file | SHA-256 |\n|---|---|\n{files}"
    )


def data_handling(run: RunDir) -> str:
    config = read_json(run.config)
    train, data, spec = config["train"], config["data"], recorded_spec(config)
    validation = data.get("splits", {}).get("validation")
    if "validation" in data.get("trained_on", []):
        split = "The training and validation splits are trained on together (`--final`); the last epoch is kept."
    elif train["validation_size"] and validation:
        split = f"The {validation['images']:,} validation images ({validation['from']}) choose the best epoch."
    elif validation:
        split = "The validation split is kept out of training and chooses nothing: the last epoch's weights are kept."
    else:
        split = "No validation split: the last epoch's weights are evaluated."
    source = {
        "csv": "The CSV files are read with pandas in chunks, checked row by row, and turned into uint8 tensors",
        "photos": f"Each photo is decoded once, brought into the model's {spec.input.describe()} input "
        f"({spec.input.preprocessing} preprocessing, as `fashionclf predict` does) and cached as a memory-mapped "
        "uint8 array",
    }.get(data["origin"], "The four IDX files are parsed with NumPy into uint8 tensors held in memory")
    evaluated = _evaluated_split(read_json(run.metrics))
    held_back = (
        "The test split is only ever evaluated, never used for a choice."
        if evaluated == "test"
        else f"The data has no test split: the results are measured on the {evaluated} split."
    )
    return (
        "## Data handling and loading\n\n"
        f"{source}. Batches of {train['batch_size']} are drawn by index from a seeded permutation and scaled from "
        f"[0, 255] to [0, 1] as float32 on the batch. {split} {held_back}"
    )


def model_section(run: RunDir) -> str:
    config = read_json(run.config)
    entry, spec, model = model_entry(config["train"]["model"]), recorded_spec(config), run_model(run)
    rows = "\n".join(
        f"| `{r['name']}` | {r['type']} | {' x '.join(map(str, r['output_shape']))} | {r['params']:,} |"
        for r in layer_table(model, spec.input_size)
    )
    return (
        f"## The model: `{entry.name}`\n\n{entry.description}\n\n"
        f"Input {' x '.join(map(str, spec.input_size))} (channels x height x width), "
        f"{count_parameters(model):,} parameters.\n\n"
        "| layer | type | output shape | parameters |\n|---|---|---|---:|\n" + rows
    )


def metrics_choice(run: RunDir) -> str:
    config = read_json(run.config)
    classes, split = len(recorded_spec(config).classes), _evaluated_split(read_json(run.metrics))
    return (
        "## Choice of metrics\n\n"
        f"Loss: cross-entropy (softmax over the {classes} classes). {training_recipe(config['train'])} Metrics on "
        f"the {split} set, computed with scikit-learn: accuracy, top-2 accuracy, per-class accuracy (the share of "
        "each class's images predicted as that class, equal to its recall), precision, recall and F1 per class with "
        "macro and weighted averages, and the confusion matrix, raw and normalized by row (true class)."
    )


def training_recipe(train: dict) -> str:
    """The run's recipe as config.json records it, in the words its settings declare (settings.py)."""
    return f"Recipe `{train.get('recipe', 'seed')}`: {in_words(TrainConfig, train)}."


def training(run: RunDir) -> str | None:
    history = read_history(run)
    if not history:
        return None
    has_val = "val_loss" in history[0]
    header = "| epoch | train loss | train acc |" + (" val loss | val acc |" if has_val else "") + " seconds |"
    rule = "|---:" * (header.count("|") - 1) + "|"
    lines = []
    for row in history:
        cells = [str(row["epoch"]), f"{row['train_loss']:.4f}", f"{row['train_accuracy']:.2%}"]
        if has_val:
            cells += [f"{row['val_loss']:.4f}", f"{row['val_accuracy']:.2%}"]
        lines.append("| " + " | ".join(cells + [f"{row['seconds']:.1f}"]) + " |")
    total = sum(row["seconds"] for row in history)
    return (
        "## Training\n\n"
        f"{len(history)} epochs in {total:.0f} s. The checkpoint evaluated below is "
        f"{'the epoch with the best validation accuracy' if has_val else 'the last epoch'}.\n\n"
        f"{header}\n{rule}\n" + "\n".join(lines) + "\n\n" + _figure(run, "training_curves", "Loss and accuracy curves")
    )


def test_results(run: RunDir) -> str:
    metrics = read_json(run.metrics)
    rows = "\n".join(
        f"| {r['class']} | {r['accuracy']:.2%} | {r['precision']:.4f} | {r['recall']:.4f} | {r['f1']:.4f} | "
        f"{r['support']:,} |"
        for r in metrics["per_class"]
    )
    averages = "\n".join(
        f"| {name} average | | {metrics[name]['precision']:.4f} | {metrics[name]['recall']:.4f} | "
        f"{metrics[name]['f1']:.4f} | {metrics['images']:,} |"
        for name in ("macro", "weighted")
    )
    per_class = sorted(metrics["per_class"], key=lambda r: r["accuracy"])
    split, caveat = _evaluated_split(metrics), ""
    if split == "validation" and not measured_on_training_data(metrics):
        caveat = " The data has no test split, so these results are on the validation split"
        caveat += (
            ", which also chose the best epoch: they are not an unbiased estimate."
            if read_json(run.config)["train"]["validation_size"]
            else ", kept out of training and of every choice."
        )
    return (
        f"## {split.capitalize()} results\n\n"
        f"Checkpoint `{metrics['checkpoint']['path']}` (epoch {metrics['checkpoint']['epoch']}): {split} accuracy "
        f"**{metrics['accuracy']:.2%}**, loss {metrics['loss']:.4f}, top-2 accuracy {metrics['top2_accuracy']:.2%}, "
        f"over all {metrics['images']:,} images of the {split} split.{caveat} The hardest class is "
        f"{per_class[0]['class']} ({per_class[0]['accuracy']:.2%}), the easiest {per_class[-1]['class']} "
        f"({per_class[-1]['accuracy']:.2%}).\n\n"
        "### Per-class accuracy, precision, recall and F1\n\n"
        "| class | accuracy | precision | recall | F1 | support |\n|---|---:|---:|---:|---:|---:|\n"
        f"{rows}\n{averages}\n\n"
        f"{_figure(run, 'per_class', 'Per-class accuracy, precision, recall and F1')}\n\n"
        f"### Normalized confusion matrix\n\n{_figure(run, 'confusion_matrix', 'Normalized confusion matrix')}\n\n"
        f"### Examples\n\n{_figure(run, 'test_samples', 'Images of the split')}\n\n"
        + _figure(run, "confident_mistakes", "Most confident mistakes")
    )


def _figure(run: RunDir, name: Figure, alt: str) -> str:
    """A figure of the run in Markdown, linked relative to the report (to_html embeds it)."""
    return f"![{alt}]({run.figure(name).relative_to(run.root).as_posix()})"


def confusions_explained(run: RunDir) -> str | None:
    """The commonest confusions, named, and the figure of their heat maps that evaluate drew."""
    if not run.figure("confused_heat_maps").is_file():
        return None
    metrics = read_json(run.metrics)
    classes = [row["class"] for row in metrics["per_class"]]
    named = [f"{classes[true]} read as {classes[wrong]} ({count:,} images)"
             for true, wrong, count in confused_pairs(metrics["confusion_matrix"], CONFUSED_PAIRS)]  # fmt: skip
    return (
        "### Where the model looked in its commonest confusions\n\n"
        f"The commonest confusions of the {metrics['data']['split']} split: {'; '.join(named)}. For each, its "
        f"{IMAGES_PER_PAIR} most confident mistakes, each with the heat map of the class it was given and of its "
        "true class: the warmer a region, the more it spoke for that class.\n\n"
        + _figure(run, "confused_heat_maps", "Heat maps of the commonest confusions")
    )


def _analysis(run: RunDir) -> dict | None:
    return read_json(run.analysis) if run.analysis.exists() else None


def receptive_field(run: RunDir) -> str | None:
    analysis = _analysis(run)
    if analysis is None:
        return None
    rows = "\n".join(
        f"| `{row['name']}` | {row['type']} | {_field_cell(row['receptive_field'])} |" for row in analysis["layers"]
    )
    field = analysis["receptive_field"]
    erf_images = analysis.get("effective_field_images", {"images": 200, "split": "test"})
    return (
        "## Overall model receptive field\n\n"
        f"Computed from each layer's kernel, stride, padding and dilation. {analysis['head']} The last spatial "
        f"layer's (`{field['layer']}`) field is **{field['size'][0]}x{field['size'][1]} pixels with jump "
        f"{field['jump'][0]}**: its first unit is centred on pixel ({field['start'][0]}, {field['start'][1]}) "
        "(pixel centres at integers, first pixel 0).\n\n"
        "| layer | type | field size (h x w), jump, start |\n|---|---|---|\n" + rows + "\n\n"
        "The effective receptive field (Luo et al., 2016: the mean gradient magnitude of that layer's centre unit over "
        f"{erf_images['images']} images of the {erf_images['split']} split), drawn against the theoretical box:\n\n"
        + _figure(run, "effective_receptive_field", "Effective receptive field")
    )


def _field_cell(field) -> str:
    if isinstance(field, str):
        return field
    return f"{field['size'][0]} x {field['size'][1]}, jump {field['jump'][0]}, start {field['start'][0]}"


def flops_and_macs(run: RunDir) -> str | None:
    analysis = _analysis(run)
    if analysis is None:
        return None
    rows = "\n".join(
        f"| `{r['name']}` | {r['type']} | {r['params']:,} | {r['macs']:,} | {r['flops']:,} "
        f"| {r['elementwise_flops']:,} | {r['training_flops']:,} | {r['activation_bytes']:,} "
        f"| {r['arithmetic_intensity']:.2f} |"
        for r in analysis["layers"]
    )
    total = analysis["total"]
    return (
        "## FLOPs and MACs\n\n"
        f"Per image, forward: **{total['macs']:,} MACs = {total['flops']:,} FLOPs** in conv and linear layers, plus "
        f"{total['elementwise_flops']:,} element-wise FLOPs; a training step (forward + backward) costs "
        f"{total['training_flops']:,} FLOPs. {total['params']:,} parameters take {total['param_bytes']:,} bytes.\n\n"
        f"Convention: {analysis['convention']} Arithmetic intensity is FLOPs per byte of parameters, input and "
        "output moved.\n\n"
        "| layer | type | params | MACs | FLOPs | element-wise FLOPs | training-step FLOPs | output bytes | "
        "FLOPs/byte |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n" + rows
    )


def expensive_layers(run: RunDir) -> str | None:
    analysis = _analysis(run)
    if analysis is None:
        return None
    large = f"batch_{analysis['batch_sizes'][-1]}"
    ranked = sorted(analysis["layers"], key=lambda r: -r["time"][large]["forward_median_us"])
    rows = "\n".join(_timing_row(r, analysis["batch_sizes"]) for r in ranked)
    heaviest = max(analysis["layers"], key=lambda r: r["flops"])
    slowest = ranked[0]
    pools = sum(r["time"][large]["forward_time_share"] for r in analysis["layers"] if "Pool" in r["type"])
    pool_flops = sum(r["flop_share"] for r in analysis["layers"] if "Pool" in r["type"])
    linear_params = sum(r["params"] for r in analysis["layers"] if r["type"] == "Linear") / analysis["total"]["params"]
    whole = analysis["model_forward_us"]
    headers = " | ".join(f"fwd b{b} (us, IQR) | share b{b} | bwd b{b} (us)" for b in analysis["batch_sizes"])
    return (
        "## Computationally expensive layers\n\n"
        f"Each layer timed alone on {analysis['device']} ({analysis['threads']} threads) on a random input of its "
        f"real shape: median of {analysis['repeats']} runs after warm-up, spread as "
        "interquartile range. Whole-model forward: "
        + ", ".join(f"{v['median_us']:,.0f} us at {k.replace('_', ' ')}" for k, v in whole.items())
        + ".\n\n"
        f"| layer | type | share of FLOPs | {headers} |\n|---|---|---:|"
        + "---:|---:|---:|" * len(analysis["batch_sizes"])
        + "\n"
        + rows
        + "\n\n"
        + _figure(run, "time_vs_flops", "Share of time vs share of FLOPs")
        + "\n\n"
        f"What it means: {_heaviest_and_slowest(heaviest, slowest, large)} Max-pooling holds {pool_flops:.1%} of the "
        f"FLOPs and takes {pools:.0%} of the forward time. A layer that does few FLOPs per byte it reads and writes is "
        "limited by memory traffic, not arithmetic, so its share of time far exceeds its share of FLOPs. Making this "
        "model faster therefore means fusing or quantizing whole conv-BatchNorm-ReLU-pool blocks"
        + (", not only the linear layers that hold most of the parameters." if linear_params > 0.5 else ".")
    )


def _heaviest_and_slowest(heaviest: dict, slowest: dict, large: str) -> str:
    def describe(row: dict, share: str) -> str:
        return f"`{row['name']}` ({share}, {row['arithmetic_intensity']:.1f} FLOPs per byte moved)"

    flops = f"{heaviest['flop_share']:.0%} of FLOPs"
    time_share = f"{slowest['time'][large]['forward_time_share']:.0%} of forward time"
    batch = large.replace("_", " ")
    if heaviest is slowest:
        both = describe(heaviest, f"{flops} and {time_share}")
        return f"the FLOP-heaviest layer, {both}, is also the slowest at {batch}."
    heavy, slow = describe(heaviest, flops), describe(slowest, time_share)
    return f"the FLOP-heaviest layer is {heavy}, yet the slowest at {batch} is {slow}."


def _timing_row(row: dict, batch_sizes: list[int]) -> str:
    cells = []
    for batch in batch_sizes:
        t = row["time"][f"batch_{batch}"]
        cells += [
            f"{t['forward_median_us']:,.0f} ({t['forward_iqr_us']:,.0f})",
            f"{t['forward_time_share']:.1%}",
            f"{t['backward_median_us']:,.0f}",
        ]
    return f"| `{row['name']}` | {row['type']} | {row['flop_share']:.1%} | " + " | ".join(cells) + " |"


def optimization(run: RunDir) -> str | None:
    if not run.quantization.is_file():
        return None
    quantization = read_json(run.quantization)
    bench = read_json(run.bench) if run.bench.is_file() else None
    measured = {(r["method"], r["backend"]): r for r in bench["rows"]} if bench else {}
    rows = "\n".join(
        _optimization_row(method, backend, file, measured.get((method, backend)))
        for method, entry in quantization["methods"].items()
        for backend, file in entry["files"].items()
    )
    fp32 = quantization["methods"]["fp32"]["accuracy"]
    dynamic = measured.get(("dynamic", "eager"))
    linear_share = _linear_time_share(run)
    why = (
        "Why the seed's dynamic quantization gives no speed-up here: it converts the Linear layers alone, and "
        + (f"those take only {linear_share:.0%} of the forward time at batch 256 " if linear_share is not None else "")
        + "(see *Computationally expensive layers*): the convolutions and the max-pooling behind them, which dominate, "
        "stay fp32, while quantizing the activations on the fly adds work to every call"
        + (
            f"; measured, it runs at {dynamic['vs']['eager_fp32']['throughput']:.2f}x the fp32 eager throughput. "
            if dynamic
            else ". "
        )
        + "What does help is static int8 of the whole network, with Conv-BatchNorm folded and ReLU and pooling run "
        "on int8 data, calibrated once on training images, executed by a runtime that fuses the graph and has little "
        "per-call overhead; the inference path picks, by measurement on the machine, the fastest backend for single "
        "images and for batches. The peers are what the runtimes give a user by themselves: the fp32 ONNX file on "
        "ONNX Runtime or OpenVINO, and each runtime's own post-training int8 of it (`ort-static`, `ov-static`)."
    )
    header = (
        "| method | backend | file | MB | accuracy | agreement with fp32 |"
        + (
            f" b1 median (us) | b1 p99 (us) | b{bench['large_batch']} img/s | GFLOP/s | x eager fp32 "
            "| x best peer fp32 | x best peer int8 |"
            if bench
            else ""
        )
        + "\n|---|---|---|---:|---:|---:|"
        + ("---:|" * 7 if bench else "")
    )
    parts = [
        "## Optimization\n\n"
        f"Quantized on {quantization['calibration_images']:,} training images for calibration; accuracy measured on "
        f"all {quantization['test_images']:,} images of the {quantization.get('evaluated_on', 'test')} split for every "
        f"file (fp32: {fp32:.2%}). "
        + (f"**On this CPU:** {verdict}." if (verdict := _int8_line(quantization, bench)) else "")
        + (f" {timing_line(bench)}" if bench else ""),
        header + "\n" + rows,
        why,
    ]
    if bench:
        parts.append(_figure(run, "bench", "Throughput and latency of every model file and backend"))
        parts.append(_goal_lines(bench["goals"]))
    return "\n\n".join(parts)


def _int8_line(quantization: dict, bench: dict | None) -> str | None:
    """bench's measured verdict on int8 for this CPU, else quantize's outlook (runs of earlier versions have
    neither)."""
    return (bench or {}).get("int8_verdict", {}).get("line") or quantization.get("int8_outlook")


def _optimization_row(method: str, backend: str, file: dict, timing: dict | None) -> str:
    cells = [method, backend, f"`{file['path']}`", f"{file['bytes'] / 1e6:.2f}", f"{file['accuracy']:.2%}",
             f"{file['agreement']:.2%}"]  # fmt: skip
    if timing:
        ratios = [f"{timing['vs'][peer]['throughput']:.2f}" if peer in timing["vs"] else "" for peer in RATIO_COLUMNS]
        cells += [f"{timing['latency_us']['median']:,.0f}", f"{timing['latency_us']['p99']:,.0f}",
                  f"{timing['images_per_s']:,.0f}", f"{timing['gflops']:.1f}", *ratios]  # fmt: skip
    return "| " + " | ".join(cells) + " |"


def _linear_time_share(run: RunDir) -> float | None:
    analysis = _analysis(run)
    if analysis is None:
        return None
    large = f"batch_{analysis['batch_sizes'][-1]}"
    return sum(r["time"][large]["forward_time_share"] for r in analysis["layers"] if r["type"] == "Linear")


def _goal_lines(goals: dict) -> str:
    lines = [
        f"- {name.replace('_', ' ')}: {goal['value']:.3f} (goal {goal['goal']}): {'met' if goal['met'] else 'NOT met'}"
        for name, goal in goals.items()
    ]
    return "Goals of the optimization work, judged on this run's measurements:\n\n" + "\n".join(lines)


SECTIONS: list[Callable[[RunDir], str | None]] = [
    title,
    dataset,
    data_handling,
    model_section,
    metrics_choice,
    training,
    test_results,
    confusions_explained,
    receptive_field,
    flops_and_macs,
    expensive_layers,
    optimization,
]


def to_html(text: str, root: Path, title: str) -> str:
    """Markdown to one self-contained HTML page: contents linking to every section, every figure as a data URI."""
    converter = markdown.Markdown(
        extensions=["tables", "toc"], extension_configs={"toc": {"toc_depth": "2-3", "title": "Contents"}}
    )
    body = converter.convert(text)

    def embed(match: re.Match) -> str:
        figure = root / html.unescape(match.group(1))
        if not figure.is_file():
            return match.group(0)
        encoded = base64.b64encode(figure.read_bytes()).decode("ascii")
        return f'src="data:image/png;base64,{encoded}"'

    body = re.sub(r'src="([^"]+\.png)"', embed, body)
    # After the title and its headline numbers, which are what most readers come for.
    body = body.replace("<h2", f'<nav aria-label="Contents">{converter.toc}</nav>\n<h2', 1)
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>\n'
        f"<style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


# Figures are saved at 110 dpi, 5 to 13 inches wide: shown at their own size where the page is wide enough, else
# scaled to the column; wide tables scroll inside the column rather than widening the page.
STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;line-height:1.5}"
    "table{display:block;overflow-x:auto;border-collapse:collapse;margin:1rem 0}"
    "td,th{border:1px solid #ccc;padding:.25rem .6rem}th{background:#f3f3f3}"
    "img{display:block;max-width:100%;height:auto;margin:1rem auto}code{background:#f6f6f6;padding:0 .2rem}"
    "nav{background:#f8f8f8;border:1px solid #ddd;padding:.5rem 1rem}.toctitle{font-weight:bold}"
    "nav ul{margin:.2rem 0;padding-left:1.2rem}"
)
