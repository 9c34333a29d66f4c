"""The real dataset, end to end: a short training run, its evaluation and its report."""

import json
import logging
import re
from itertools import pairwise
from types import SimpleNamespace

import pytest
from rich.console import Console

from fashionclf import pipeline
from fashionclf.analysis import analyze
from fashionclf.cli import summary_table
from fashionclf.config import TrainConfig
from fashionclf.evaluate import evaluate_run
from fashionclf.preprocess import FASHION_MNIST_CLASSES
from fashionclf.report import build_report
from fashionclf.rundir import RunDir, write_json


def test_the_stages_are_counted_from_the_stages_run_and_the_data_read_once(tmp_path, monkeypatch, caplog):
    """The count in "[3/7]" was a constant kept in step with the calls by hand."""
    done, data = [], object()

    def stage(name: str, result=None):
        def work(*args, **kwargs):
            done.append((name, args, kwargs))
            return result

        return work

    for name in ("load_dataset", "train", "evaluate_run", "analyze", "quantize_run", "bench_run", "build_report"):
        monkeypatch.setattr(pipeline, name, stage(name, data if name == "load_dataset" else None))
    monkeypatch.setattr(pipeline, "summary", stage("summary"))
    caplog.set_level(logging.INFO, logger="fashionclf.pipeline")
    pipeline.run_all(TrainConfig(device="cpu"), tmp_path / "run")
    stages = [name for name, _, _ in done[:-1]]
    assert stages == ["load_dataset", "train", "evaluate_run", "analyze", "quantize_run", "bench_run", "build_report"]
    assert [kwargs.get("data") for name, _, kwargs in done if name in ("train", "evaluate_run")] == [data, data]
    started = [m for m in caplog.messages if m.endswith(" ...")]
    assert [m.split("]")[0] for m in started] == [f"[{i}/{len(stages)}" for i in range(1, len(stages) + 1)]


def test_the_main_job_keeps_a_final_recipes_validation_split_out_where_there_is_no_test_split(tmp_path, monkeypatch):
    trained = []
    monkeypatch.setattr(pipeline, "train", lambda config, *args, **kwargs: trained.append(config.final))
    for stage in ("evaluate_run", "analyze", "quantize_run", "bench_run", "build_report", "summary"):
        monkeypatch.setattr(pipeline, stage, lambda *args, **kwargs: None)
    for test in (None, "a test split"):
        data = SimpleNamespace(test=test, validation="a validation split")
        monkeypatch.setattr(pipeline, "load_dataset", lambda *args, data=data: data)
        pipeline.run_all(TrainConfig.from_recipe("photos", device="cpu"), tmp_path / f"run-{test is None}")
    assert trained == [False, True]


@pytest.fixture(scope="module")
def short_run(trained_run, real_data):
    return trained_run, evaluate_run(trained_run.root, data=real_data)


@pytest.mark.real_data
def finished_run(root, classes: list[str], split: str) -> RunDir:
    """A run directory holding what the main job's summary reads, and nothing else."""
    run = RunDir(root)
    root.mkdir()
    write_json(run.config, {"spec": {"classes": classes, "preprocessing": "photo", "channels": 3, "size": 64}})
    write_json(run.metrics, {"accuracy": 0.875, "data": {"split": split}})
    write_json(run.quantization, {"best_int8": None})
    write_json(run.bench, {"large_batch": 64, "best_peer": {"int8": {}}, "int8_verdict": {"line": "fp32 it is"}})
    layer = {"name": "stem", "type": "Conv2d", "time": {"batch_64": {"forward_time_share": 0.4}}}
    write_json(run.analysis, {"batch_sizes": [1, 64], "layers": [layer]})
    return run


def test_the_summary_of_a_photo_run_says_its_split_and_batch_and_leaves_the_seed_report_out(tmp_path):
    photos = pipeline.summary(finished_run(tmp_path / "photos", ["hat", "shoes"], "validation"))
    words = " ".join(render(summary_table(photos)).split())
    assert "validation accuracy 87.50%" in words and "seed report" not in words
    assert "stem (Conv2d), 40% of the forward time at batch 64" in words
    fashion = pipeline.summary(finished_run(tmp_path / "fashion", list(FASHION_MNIST_CLASSES), "test"))
    words = " ".join(render(summary_table(fashion)).split())
    assert "test accuracy 87.50% (seed report: 90.29%, -2.79 points)" in words


def render(table) -> str:
    """The table's cells as text."""
    console = Console(width=200, record=True)
    console.print(table)
    return re.sub(r"[│┌┐└┘─┬┴├┤┼]", " ", console.export_text())


def test_loss_falls_and_test_accuracy_passes_80_percent(short_run):
    run, metrics = short_run
    history = json.loads(run.history_json.read_text())
    assert history[1]["train_loss"] < history[0]["train_loss"]
    assert metrics["images"] == 10_000
    assert metrics["accuracy"] > 0.80
    assert sum(row["support"] for row in metrics["per_class"]) == 10_000


@pytest.mark.real_data
def test_evaluation_writes_metrics_and_figures(short_run):
    run, metrics = short_run
    assert json.loads(run.metrics.read_text())["accuracy"] == metrics["accuracy"]
    for figure in ("training_curves", "confusion_matrix", "per_class", "test_samples", "confident_mistakes"):
        assert (run.figures / f"{figure}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.real_data
def test_report_has_measured_sections_and_no_empty_heading(short_run):
    run, metrics = short_run
    build_report(run.root)
    assert "receptive field" not in run.report_md.read_text()  # not analysed yet: no such heading
    analysis = analyze(run.root, batch_size=16, repeats=2)
    assert json.loads(run.analysis.read_text())["total"] == analysis["total"]
    html = build_report(run.root).read_text()
    text = run.report_md.read_text()
    assert f"{metrics['accuracy']:.2%}" in text
    for heading in (
        "Dataset used",
        "Data handling",
        "The model",
        "Choice of metrics",
        "Test results",
        "Overall model receptive field",
        "FLOPs and MACs",
        "Computationally expensive layers",
    ):
        assert heading in text
    assert "1,475,338" in text
    headings = [m.start() for m in re.finditer(r"^#+ ", text, flags=re.M)] + [len(text)]
    for start, end in pairwise(headings):
        body = text[start:end].split("\n", 1)[1].strip()
        assert body, f"empty section: {text[start:end]!r}"
    assert "4,335,600 MACs" in text and "10x10 pixels with jump 4" in text
    figures = sorted(run.figures.glob("*.png"))  # evaluate's and analyze's, the heat maps of confusions among them
    assert run.figure("confused_heat_maps") in figures
    assert 'src="figures/' not in html and html.count("data:image/png;base64,") == len(figures)
