"""Evaluation on a whole split (never shuffled, no batch dropped), with scikit-learn's metrics, or through a class
map for data whose classes are not the model's."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.table import Table
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, top_k_accuracy_score

from fashionclf import datasets, plots
from fashionclf.checkpoint import load_model, recorded_spec
from fashionclf.errors import FashionClfError
from fashionclf.explain import confusion_figure, explainer_for
from fashionclf.provenance import change_record, run_dataset, trained_on
from fashionclf.rundir import RunDir, locked, open_run, read_history, read_json, write_json
from fashionclf.runtime import resolve_device
from fashionclf.sources import load_dataset
from fashionclf.transfer import split_logits


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


SPLITS = ("auto", "test", "validation", "train", "all")
CLASS_MAPS = resources.files("fashionclf") / "class_maps"


def evaluate_run(
    run_dir: Path,
    device: str = "auto",
    batch_size: int = 1000,
    data: datasets.Dataset | None = None,
    data_path: Path | str | None = None,
    split: str = "auto",
    class_map: str | None = None,
    preprocessing: str | None = None,
    allow_changed_data: bool = False,
) -> dict:
    """Evaluate the run's best checkpoint; write metrics.json and the figures.

    Without `data_path`: the run's own data, into the run directory. With it: that data, into
    RUN_DIR/evaluations/<its name>[-<split>][-<preprocessing>]/ (the split when not "auto", the preprocessing when
    given), so the run's own results and other evaluations stay. The split: "auto" (the test split, or the validation
    split where the data has no test split), one by name, or "all" (every image, for data the model never trained
    on). With `class_map` (a file, or a map shipped with the project by name), the data's classes are judged through
    it: a prediction is right when it is one of the model's classes its class maps to. `preprocessing` replaces the
    model's own for pictures. The run's own data is refused where it is not what the run was trained on, unless
    `allow_changed_data`: metrics.json then records what changed (`provenance.run_dataset`)."""
    if split not in SPLITS:
        raise FashionClfError(f"--split: unknown {split!r}; known: {', '.join(SPLITS)}")
    run = open_run(run_dir)
    model, checkpoint = load_model(run.best_checkpoint)
    spec = recorded_spec(checkpoint).using(preprocessing)
    changes: dict | None = None  # None: the data is not the run's own, so nothing was compared
    if data_path is not None:
        data = load_dataset(data_path, spec.input)
    elif data is None:
        data, changes = run_dataset(run, spec.input, "evaluate", allow_changed_data)
    split_name, images = _chosen_split(data, split)
    trained = trained_on(run, data, split_name, own_data=data_path is None)
    if trained and split == "auto":
        raise FashionClfError(
            f"{run.root}: trained on the {split_name} split of {data.directory} too (--final), so it measures "
            f"nothing held out; evaluate it on photos it never saw (--data DIR, or add a test/ split to its "
            f"folder), or name --split {split_name}"
        )
    torch_device = resolve_device(device)
    logits = split_logits(model.to(torch_device), images, batch_size, torch_device)
    probabilities = F.softmax(logits, dim=1).numpy()
    if class_map is None:
        _check_classes(data, spec.classes)
        metrics = compute_metrics(images.labels.numpy(), probabilities, spec.classes)
    else:
        mapping = read_class_map(class_map, data.classes, spec.classes)
        metrics = mapped_metrics(images.labels.numpy(), probabilities, data.classes, spec.classes, mapping)
    metrics["checkpoint"] = {"path": str(run.best_checkpoint.relative_to(run.root)), "epoch": checkpoint["epoch"]}
    metrics["data"] = {"path": str(data.directory), "origin": data.origin, "split": split_name,
                       "from": data.split_origins.get(split_name, "every split"),
                       "preprocessing": spec.input.preprocessing, "trained_on": trained}  # fmt: skip
    if changes is not None:
        metrics |= change_record(changes)
    target = run
    if data_path is not None:
        named = [
            _slug(Path(data_path)),
            *([split] if split != "auto" else []),
            *([preprocessing] if preprocessing else []),
        ]
        target = run.evaluation("-".join(named))
    with locked(run.root, "fashionclf evaluate"):
        write_json(target.metrics, metrics)
        history = read_history(run) if data_path is None else []
        write_figures(target, images, probabilities, metrics, data.classes, spec.classes, history)
        if class_map is None:  # through a class map, a true class may be none of the model's to draw
            explainer = explainer_for(model.cpu(), spec)
            labels = images.labels.numpy()
            confusion_figure(
                explainer, images.images.numpy(), labels, probabilities, target.figure("confused_heat_maps")
            )
    return metrics


def _chosen_split(data: datasets.Dataset, split: str) -> tuple[str, datasets.Split]:
    if split == "auto":
        return data.evaluation_split
    if split == "all":
        present = [s for s in (data.train, data.validation, data.test) if s is not None]
        return "all", datasets.concatenate(*present)
    chosen = {"train": data.train, "validation": data.validation, "test": data.test}[split]
    if chosen is None:
        raise FashionClfError(f"{data.directory}: has no {split} split")
    return split, chosen


def _check_classes(data: datasets.Dataset, classes: tuple[str, ...]) -> None:
    if tuple(data.classes) != tuple(classes):
        raise FashionClfError(
            f"{data.directory}: its classes ({', '.join(data.classes)}) are not the model's ({', '.join(classes)}); "
            "give --class-map to judge it through a map between them"
        )


def read_class_map(name_or_path: str, data_classes: tuple[str, ...], model_classes: tuple[str, ...]) -> dict:
    """The map from the data's class names to lists of the model's: a JSON file, or one shipped with the project
    by name. Every class it names must exist; the data's classes it leaves out map to nothing."""
    shipped = CLASS_MAPS / f"{name_or_path}.json"
    path = Path(str(shipped)) if shipped.is_file() else Path(name_or_path)
    if not path.is_file():
        known = sorted(p.name.removesuffix(".json") for p in CLASS_MAPS.iterdir() if p.name.endswith(".json"))
        raise FashionClfError(f"--class-map {name_or_path}: no such file, nor a shipped map ({', '.join(known)})")
    mapping = read_json(path)
    if not isinstance(mapping, dict) or not all(isinstance(v, list) for v in mapping.values()):
        raise FashionClfError(f"{path}: a class map is a JSON object from class names to lists of class names")
    for data_class, targets in mapping.items():
        if data_class not in data_classes:
            raise FashionClfError(f"{path}: maps {data_class!r}, which is not a class of the data")
        if lacking := [t for t in targets if t not in model_classes]:
            raise FashionClfError(f"{path}: names {lacking[0]!r}, a class the model lacks ({', '.join(model_classes)})")
    return {name: mapping.get(name, []) for name in data_classes}


def mapped_metrics(
    labels: np.ndarray,
    probabilities: np.ndarray,
    data_classes: tuple[str, ...],
    model_classes: tuple[str, ...],
    mapping: dict[str, list[str]],
) -> dict:
    """Accuracy through a class map over the images whose class maps to something; the others are counted apart.
    The confusion matrix has a row per data class and a column per model class."""
    right = np.zeros((len(data_classes), len(model_classes)), dtype=bool)
    for row, name in enumerate(data_classes):
        right[row, [model_classes.index(target) for target in mapping[name]]] = True
    mapped = right[labels].any(axis=1)
    predicted = probabilities.argmax(axis=1)
    correct = right[labels, predicted]
    confusion = np.zeros((len(data_classes), len(model_classes)), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        normalized = np.nan_to_num(confusion / confusion.sum(axis=1, keepdims=True))
    per_class = [
        {"class": name, "maps_to": mapping[name], "accuracy": float(correct[labels == i].mean()),
         "support": int((labels == i).sum())}
        for i, name in enumerate(data_classes) if mapping[name] and (labels == i).any()
    ]  # fmt: skip
    left_out = {name: int((labels == i).sum()) for i, name in enumerate(data_classes) if not mapping[name]}
    return {
        "images": int(mapped.sum()),
        "accuracy": float(correct[mapped].mean()) if mapped.any() else 0.0,
        "class_map": mapping,
        "per_class": per_class,
        "left_out": {name: count for name, count in left_out.items() if count},
        "confusion_matrix": confusion.tolist(),
        "confusion_matrix_normalized": normalized.round(6).tolist(),
    }


def _slug(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", path.resolve().name) or "data"


def write_figures(
    target: RunDir,
    test: datasets.Split,
    probabilities: np.ndarray,
    metrics: dict,
    data_classes: tuple[str, ...],
    model_classes: tuple[str, ...],
    history: list[dict],
) -> None:
    images, labels = test.images.numpy(), test.labels.numpy()
    predicted, confidence = probabilities.argmax(1), probabilities.max(1)
    right = _right_answers(labels, predicted, metrics, data_classes, model_classes)
    if history:
        plots.training_curves(history, target.figure("training_curves"))
    plots.confusion_heatmap(np.array(metrics["confusion_matrix_normalized"]), data_classes, model_classes,
                            target.figure("confusion_matrix"))  # fmt: skip
    plots.per_class_bars(metrics["per_class"], target.figure("per_class"))
    captions = [f"{model_classes[p]}\n({data_classes[t]})" for p, t in zip(predicted, labels, strict=True)]
    first = np.arange(min(32, len(labels)))
    plots.image_grid(images[first], [captions[i] for i in first], right[first], target.figure("test_samples"),
                     title="Images: predicted (true)")  # fmt: skip
    wrong = np.flatnonzero(~right)
    worst = wrong[np.argsort(-confidence[wrong])][:32]
    worst_captions = [f"{captions[i]} {confidence[i]:.0%}" for i in worst]
    plots.image_grid(images[worst], worst_captions, right[worst], target.figure("confident_mistakes"),
                     title="Most confident mistakes: predicted (true)")  # fmt: skip


def _right_answers(labels, predicted, metrics: dict, data_classes, model_classes) -> np.ndarray:
    if "class_map" not in metrics:
        return predicted == labels
    allowed = [set(metrics["class_map"][name]) for name in data_classes]
    return np.array([model_classes[p] in allowed[t] for p, t in zip(predicted, labels, strict=True)])


def metrics_table(metrics: dict) -> Table:
    if "class_map" in metrics:
        return _mapped_table(metrics)
    table = Table(
        title=f"{metrics['data']['split'].capitalize()} split: {metrics['images']:,} images, accuracy "
        f"{metrics['accuracy']:.2%}, loss {metrics['loss']:.4f}, top-2 {metrics['top2_accuracy']:.2%}"
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


def _mapped_table(metrics: dict) -> Table:
    left_out = ", ".join(f"{name} {count}" for name, count in metrics["left_out"].items()) or "none"
    table = Table(
        title=f"{metrics['data']['split'].capitalize()} split through the class map: {metrics['images']:,} images, "
        f"accuracy {metrics['accuracy']:.2%} (left out: {left_out})"
    )
    for column in ("class", "counts as right", "accuracy", "images"):
        table.add_column(column, justify="right" if column in ("accuracy", "images") else "left")
    for row in metrics["per_class"]:
        table.add_row(row["class"], " or ".join(row["maps_to"]), f"{row['accuracy']:.2%}", str(row["support"]))
    return table
