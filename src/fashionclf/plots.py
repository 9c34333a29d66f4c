"""Figures as PNG files; each function draws one figure and writes it. Figures are made with matplotlib's object
API, not pyplot, so nothing needs a display and no backend is chosen for the whole process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from fashionclf.files import atomic_write


def subplots(rows: int = 1, columns: int = 1, **options):
    figure = Figure(figsize=options.pop("figsize", None))
    return figure, figure.subplots(rows, columns, **options)


def save(figure: Figure, path: Path) -> None:
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))


def training_curves(history: list[dict], path: Path) -> None:
    epochs = [row["epoch"] for row in history]
    figure, (loss_axis, accuracy_axis) = subplots(1, 2, figsize=(10, 3.8))
    for split, style in (("train", "-o"), ("val", "--s")):
        if f"{split}_loss" in history[0]:
            label = "train" if split == "train" else "validation"
            loss_axis.plot(epochs, [row[f"{split}_loss"] for row in history], style, label=label)
            accuracy_axis.plot(epochs, [100 * row[f"{split}_accuracy"] for row in history], style, label=label)
    loss_axis.set(title="Loss", xlabel="epoch", ylabel="cross-entropy")
    accuracy_axis.set(title="Accuracy", xlabel="epoch", ylabel="%")
    for axis in (loss_axis, accuracy_axis):
        axis.grid(alpha=0.3)
        axis.legend()
        axis.set_xticks(epochs)
    save(figure, path)


def confusion_heatmap(
    normalized: np.ndarray, true_classes: tuple[str, ...], predicted_classes: tuple[str, ...], path: Path
) -> None:
    """Rows are the data's classes, columns the model's (the same classes unless judged through a class map)."""
    figure, axis = subplots(figsize=(1.5 + 0.6 * len(predicted_classes), 1.5 + 0.5 * len(true_classes)))
    image = axis.imshow(normalized, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axis, fraction=0.046)
    axis.set_xticks(np.arange(len(predicted_classes)), predicted_classes, rotation=45, ha="right")
    axis.set_yticks(np.arange(len(true_classes)), true_classes)
    axis.set(xlabel="predicted", ylabel="true", title="Normalized confusion matrix (rows sum to 1)")
    for i in range(len(true_classes)):
        for j in range(len(predicted_classes)):
            value = normalized[i, j]
            axis.text(
                j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color="white" if value > 0.5 else "black"
            )
    save(figure, path)


def per_class_bars(per_class: list[dict], path: Path) -> None:
    """Per-class accuracy, and precision, recall and F1 beside it where they were measured."""
    names = [row["class"] for row in per_class]
    positions = np.arange(len(names))
    with_prf = all("f1" in row for row in per_class)
    figure, axes = subplots(1, 2 if with_prf else 1, figsize=(13 if with_prf else 6.5, 4), squeeze=False)
    accuracy_axis = axes[0, 0]
    accuracy_axis.bar(positions, [100 * row["accuracy"] for row in per_class], color="tab:blue")
    accuracy_axis.set(title="Per-class accuracy", ylabel="%", ylim=(0, 100))
    if with_prf:
        width, prf_axis = 0.27, axes[0, 1]
        for offset, metric in zip((-width, 0, width), ("precision", "recall", "f1"), strict=True):
            prf_axis.bar(positions + offset, [row[metric] for row in per_class], width, label=metric)
        prf_axis.set(title="Precision, recall and F1", ylim=(0, 1))
        prf_axis.legend(loc="lower right")
    for axis in axes[0]:
        axis.set_xticks(positions, names, rotation=45, ha="right")
        axis.grid(axis="y", alpha=0.3)
    save(figure, path)


def image_grid(
    images: np.ndarray, captions: list[str], right: np.ndarray, path: Path, title: str, columns: int = 8
) -> None:
    """uint8 images (N, C, H, W), grayscale or RGB, with their captions; those of wrong predictions in red."""
    rows = max(1, int(np.ceil(len(images) / columns)))
    figure, axes = subplots(rows, columns, figsize=(columns * 1.45, rows * 1.7))
    for index, axis in enumerate(np.atleast_1d(axes).ravel()):
        axis.axis("off")
        if index >= len(images):
            continue
        image = images[index]
        axis.imshow(image[0] if len(image) == 1 else image.transpose(1, 2, 0), cmap="gray", vmin=0, vmax=255)
        axis.set_title(captions[index], fontsize=6.5, color="black" if right[index] else "red")
    figure.suptitle(title)
    save(figure, path)


def effective_receptive_field(gradient: np.ndarray, field: dict, unit: tuple[int, int], path: Path) -> None:
    """The gradient-magnitude map of one unit (Luo et al., 2016), with its theoretical field drawn as a box."""
    figure, axis = subplots(figsize=(4.6, 4.2))
    image = axis.imshow(gradient / (gradient.max() or 1), cmap="magma")
    figure.colorbar(image, ax=axis, fraction=0.046, label="|gradient| (normalized)")
    (height, width), (jump_y, jump_x), (start_y, start_x) = field["size"], field["jump"], field["start"]
    centre_y, centre_x = start_y + jump_y * unit[0], start_x + jump_x * unit[1]
    axis.add_patch(
        Rectangle((centre_x - width / 2, centre_y - height / 2), width, height, fill=False, color="cyan", lw=1.5)
    )
    axis.set_title(f"Effective receptive field of {field['layer']}\n(box: theoretical {height}x{width})", fontsize=9)
    save(figure, path)


def time_vs_flops(layers: list[dict], batch_sizes: list[int], path: Path) -> None:
    """Each layer's share of forward time beside its share of FLOPs."""
    names = [row["name"] for row in layers]
    positions = np.arange(len(names))
    width = 0.8 / (len(batch_sizes) + 1)
    figure, axis = subplots(figsize=(11, 4))
    axis.bar(positions - 0.4 + width / 2, [100 * row["flop_share"] for row in layers], width, label="share of FLOPs")
    for i, batch in enumerate(batch_sizes, start=1):
        shares = [100 * row["time"][f"batch_{batch}"]["forward_time_share"] for row in layers]
        axis.bar(positions - 0.4 + width / 2 + i * width, shares, width, label=f"share of forward time, batch {batch}")
    axis.set_xticks(positions, [f"{n}\n{row['type']}" for n, row in zip(names, layers, strict=True)], fontsize=7)
    axis.set(ylabel="%", title="Where the FLOPs are vs where the time goes (each layer timed alone)")
    axis.grid(axis="y", alpha=0.3)
    axis.legend()
    save(figure, path)


def bench_bars(rows: list[dict], path: Path) -> None:
    """Throughput at the large batch and latency at batch 1, one bar per method and backend."""
    labels = [f"{row['method']}\n{row['backend']}" for row in rows]
    positions = np.arange(len(rows))
    figure, (left, right) = subplots(1, 2, figsize=(12, 4))
    left.bar(positions, [row["images_per_s"] for row in rows], color="tab:blue")
    left.set(ylabel="images/s", title="Throughput at batch 256 (higher is better)")
    right.bar(positions, [row["latency_us"]["median"] for row in rows], color="tab:orange")
    right.set(ylabel="microseconds", title="Latency at batch 1, median (lower is better)")
    for axis in (left, right):
        axis.set_xticks(positions, labels, fontsize=7)
        axis.grid(axis="y", alpha=0.3)
    save(figure, path)


def picture_grid(rows: list[list], captions: list[list[str]], path: Path, title: str | None = None) -> None:
    """Pictures (PIL images or arrays (H, W, 3)) in rows, each with its caption; short rows are left blank on the
    right."""
    columns = max(len(row) for row in rows)
    figure, axes = subplots(len(rows), columns, figsize=(columns * 1.9, len(rows) * 2.1 + 0.4), squeeze=False)
    for row_axes, pictures, row_captions in zip(axes, rows, captions, strict=True):
        for index, axis in enumerate(row_axes):
            axis.axis("off")
            if index < len(pictures):
                axis.imshow(pictures[index])
                axis.set_title(row_captions[index], fontsize=7)
    if title:
        figure.suptitle(title, fontsize=9)
    save(figure, path)
