"""Evaluation on the whole test set (never shuffled, no batch dropped), with scikit-learn's metrics."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.table import Table
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, top_k_accuracy_score

from fashionclf import data as fmnist
from fashionclf import plots
from fashionclf.errors import FashionClfError
from fashionclf.models import predict_logits
from fashionclf.rundir import load_model, locked, open_run, write_json
from fashionclf.sources import load_dataset
from fashionclf.train import read_history, resolve_device, run_data


def compute_metrics(labels: np.ndarray, probabilities: np.ndarray, classes: tuple[str, ...]) -> dict:
    """All test metrics from true labels (N,) and predicted class probabilities (N, C)."""
    label_ids = np.arange(len(classes))
    predicted = probabilities.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=label_ids, zero_division=0
    )
    raw = confusion_matrix(labels, predicted, labels=label_ids)
    with np.errstate(invalid="ignore", divide="ignore"):
        normalized = np.nan_to_num(raw / raw.sum(axis=1, keepdims=True))
    log_probabilities = torch.from_numpy(np.log(np.clip(probabilities, 1e-12, 1.0)))
    metrics = {
        "images": int(len(labels)),
        "accuracy": float((predicted == labels).mean()),
        "loss": float(F.nll_loss(log_probabilities, torch.from_numpy(labels).long()).item()),
        "top2_accuracy": float(top_k_accuracy_score(labels, probabilities, k=2, labels=label_ids)),
        # Per-class accuracy is the share of a class's images classified as that class, i.e. its recall.
        "per_class": [
            {
                "class": name,
                "accuracy": float(recall[i]),
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(classes)
        ],
        "confusion_matrix": raw.tolist(),
        "confusion_matrix_normalized": normalized.round(6).tolist(),
    }
    # Averages run over the classes that occur (true or predicted), so a small set lacking a class is not
    # dragged down by zeros for it.
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(labels, predicted, average=average, zero_division=0)
        metrics[average] = {"precision": float(p), "recall": float(r), "f1": float(f)}
    return metrics


SPLITS = ("test", "all")


def evaluate_run(
    run_dir: Path,
    device: str = "auto",
    batch_size: int = 1000,
    data: fmnist.FashionMNIST | None = None,
    data_path: Path | None = None,
    split: str = "test",
) -> dict:
    """Evaluate the run's best checkpoint on a test set; write metrics.json and the figures.

    Without `data_path`: the run's own test set, into the run directory. With it: that data's test split, or with
    split "all" every image of it (for data the model never trained on), into RUN_DIR/evaluations/<its name>/, so
    the run's own results stay."""
    if split not in SPLITS:
        raise FashionClfError(f"--split: unknown {split!r}; known: {', '.join(SPLITS)}")
    run = open_run(run_dir)
    if data_path is not None:
        data = load_dataset(Path(data_path))
        out = run.root / "evaluations" / _slug(Path(data_path))
        metrics_path, figures = out / "metrics.json", out / "figures"
    else:
        data = data or load_dataset(run_data(run))
        metrics_path, figures = run.metrics, run.figures
    test = data.test if split == "test" else fmnist.concatenate(data.train, data.test)
    model, checkpoint = load_model(run.best_checkpoint)
    torch_device = resolve_device(device)
    logits = predict_logits(model.to(torch_device), test.images, batch_size, torch_device)
    probabilities = F.softmax(logits, dim=1).numpy()
    metrics = compute_metrics(test.labels.numpy(), probabilities, fmnist.CLASSES)
    metrics["checkpoint"] = {"path": str(run.best_checkpoint.relative_to(run.root)), "epoch": checkpoint["epoch"]}
    metrics["data"] = {"path": str(data.directory), "origin": data.origin, "split": split}
    with locked(run.root, "fashionclf evaluate"):
        write_json(metrics_path, metrics)
        write_figures(figures, test, probabilities, metrics, history=read_history(run) if data_path is None else [])
    return metrics


def _slug(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", path.resolve().name) or "data"


def write_figures(
    figures: Path, test: fmnist.Split, probabilities: np.ndarray, metrics: dict, history: list[dict]
) -> None:
    classes = fmnist.CLASSES
    images, labels = test.images.numpy(), test.labels.numpy()
    predicted, confidence = probabilities.argmax(1), probabilities.max(1)
    if history:
        plots.training_curves(history, figures / "training_curves.png")
    plots.confusion_heatmap(np.array(metrics["confusion_matrix_normalized"]), classes, figures / "confusion_matrix.png")
    plots.per_class_bars(metrics["per_class"], figures / "per_class.png")
    plots.image_grid(images[:32], labels[:32], predicted[:32], classes, figures / "test_samples.png",
                     title="Test images: predicted (true)")  # fmt: skip
    wrong = np.flatnonzero(predicted != labels)
    worst = wrong[np.argsort(-confidence[wrong])][:32]
    plots.image_grid(images[worst], labels[worst], predicted[worst], classes, figures / "confident_mistakes.png",
                     title="Most confident mistakes: predicted (true)", confidence=confidence[worst])  # fmt: skip


def metrics_table(metrics: dict) -> Table:
    table = Table(
        title=f"Test set: {metrics['images']:,} images, accuracy {metrics['accuracy']:.2%}, "
        f"loss {metrics['loss']:.4f}, top-2 {metrics['top2_accuracy']:.2%}"
    )
    for column in ("class", "accuracy", "precision", "recall", "F1", "support"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for row in metrics["per_class"]:
        table.add_row(
            row["class"],
            f"{row['accuracy']:.2%}",
            f"{row['precision']:.4f}",
            f"{row['recall']:.4f}",
            f"{row['f1']:.4f}",
            str(row["support"]),
        )
    for average in ("macro", "weighted"):
        m = metrics[average]
        table.add_row(
            f"{average} avg",
            "",
            f"{m['precision']:.4f}",
            f"{m['recall']:.4f}",
            f"{m['f1']:.4f}",
            str(metrics["images"]),
        )
    return table
