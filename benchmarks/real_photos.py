"""Real photos: how right each way of classifying them is, on the validation split of clothing-dataset-small.

    .venv/bin/python benchmarks/real_photos.py [--photos ../shared/photos/clothing-dataset-small] [--out runs/photos]
                                               [--zero-shot] [--scratch] [--best]

Every model that learns from photos trains on the train split and is judged on the validation split (the test split
is withheld). The rows, each with its training time on the machine at hand (wall clock, photo decoding and feature
extraction included, for runs trained now; the epochs alone for runs found under --out):
  (a) models that never saw a photo, through the shipped class map (7 of the 10 classes exist in Fashion-MNIST;
      hat, shorts and skirt are left out), on both splits (nothing here trains on photos) and on the validation
      split alone: the Fashion-MNIST seed model (`runs/seed`, `make run`) and the `robust` recipe's model
      (`runs/robust`, trained here unless it exists), each with the fashion-mnist and the garment preprocessing;
  (b) the 28x28 grayscale FashionCNN fine-tuned on the photos with `--init runs/seed` (a new head for the 10
      classes), beside (b') the same network trained on the photos from scratch;
  (c) `--recipe zero-shot`: EfficientNet-Lite0's ImageNet classes through the garment map, no label used (also on
      both splits); (c') with `--vote-run runs/seed` (where it exists), self-trained on the train split's photos by
      the vote of ImageNet's classes joined by the seed model's, no label used: on the validation split alone;
  (d) `--recipe photos` (EfficientNet-Lite0, frozen, a head on four views' features), and its int8 model
      (`fashionclf quantize`, `fashionclf bench`) beside fp32;
  (e) with --scratch, `--recipe photos-scratch` (ResNet-9 from scratch at 64 px: 7 min on AMX, hours on AVX2);
  (f) with --best, `--recipe photos-best` (EfficientNet-Lite0 fine-tuned: 1.5 min on a GPU, 12 hours on 2 AVX2 cores);
  and, for reference, the published results on the same data set (not measured here).
Runs that already exist under --out are reused, so the table can be printed again without training.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from fashionclf.bench import bench_run
from fashionclf.config import TrainConfig
from fashionclf.evaluate import evaluate_run
from fashionclf.quantize import quantize_run
from fashionclf.train import train

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "photos" / "clothing-dataset-small"


def trained(out: Path, config: TrainConfig) -> tuple[Path, float]:
    """The run at `out`, trained now unless it exists, and its training time in seconds: the wall clock when
    trained now, else the epochs' time from its history."""
    if not (out / "history.json").is_file():
        started = time.perf_counter()
        train(config, out)
        return out, time.perf_counter() - started
    return out, sum(row["seconds"] for row in json.loads((out / "history.json").read_text()))


def row(name: str, metrics: dict, seconds: float | None) -> dict:
    per_class = {r["class"]: r["accuracy"] for r in metrics["per_class"]}
    return {"name": name, "images": metrics["images"], "accuracy": metrics["accuracy"], "per_class": per_class,
            "train_s": seconds}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=PHOTOS)
    parser.add_argument("--seed-run", type=Path, default=Path("runs/seed"))
    parser.add_argument("--robust-run", type=Path, default=Path("runs/robust"))
    parser.add_argument("--out", type=Path, default=Path("runs/photos-bench"))
    parser.add_argument("--zero-shot", action="store_true", help="only the rows (a): no photo training")
    parser.add_argument("--scratch", action="store_true", help="also the photos-scratch recipe (hours on AVX2)")
    parser.add_argument("--best", action="store_true", help="also the photos-best recipe (for a GPU)")
    args = parser.parse_args()
    photos = str(args.photos)
    robust_run, robust_seconds = trained(args.robust_run, TrainConfig.from_recipe("robust"))
    rows = []
    for name, run, seconds in (("seed", args.seed_run, None), ("robust", robust_run, robust_seconds)):
        for preprocessing in ("fashion-mnist", "garment"):
            for split in ("all", "validation"):
                metrics = evaluate_run(run, data_path=photos, split=split, class_map="clothing-small",
                                       preprocessing=preprocessing)  # fmt: skip
                rows.append(row(f"(a) {name}, {preprocessing}, {split}", metrics, seconds))
    if args.zero_shot:
        print_table(rows)
        return
    fine_tuned = {"(b) FashionCNN 28x28, --init runs/seed": str(args.seed_run), "(b') FashionCNN 28x28, scratch": None}
    for name, init in fine_tuned.items():
        config = TrainConfig.from_recipe("best", data=photos, init=init, epochs=30, batch_size=64)
        run, seconds = trained(args.out / ("finetuned" if init else "scratch"), config)
        rows.append(row(name, evaluate_run(run), seconds))
    run, seconds = trained(args.out / "zero-shot", TrainConfig.from_recipe("zero-shot", data=photos))
    rows.append(row("(c) zero-shot, validation", evaluate_run(run), seconds))
    rows.append(row("(c) zero-shot, all", evaluate_run(run, split="all"), seconds))
    if args.seed_run.is_dir():
        config = TrainConfig.from_recipe("zero-shot", data=photos, vote_run=str(args.seed_run))
        run, seconds = trained(args.out / "zero-shot-voted", config)
        rows.append(row("(c') zero-shot --vote-run runs/seed", evaluate_run(run), seconds))
    photo_run, seconds = trained(args.out / "photos", TrainConfig.from_recipe("photos", data=photos, final=False))
    rows.append(row("(d) photos recipe, fp32", evaluate_run(photo_run), seconds))
    if args.scratch:
        run, seconds = trained(args.out / "photos-scratch", TrainConfig.from_recipe("photos-scratch", data=photos))
        rows.append(row("(e) photos-scratch recipe", evaluate_run(run), seconds))
    if args.best:
        run, seconds = trained(
            args.out / "photos-best", TrainConfig.from_recipe("photos-best", data=photos, final=False)
        )
        rows.append(row("(f) photos-best recipe", evaluate_run(run), seconds))
    started = time.perf_counter()
    quantization = quantize_run(photo_run)
    bench = bench_run(photo_run)
    print_table(rows)
    print_published()
    print_int8(quantization, bench, time.perf_counter() - started)


# Published results on clothing-dataset-small, all from ImageNet weights (split as each source reports it).
PUBLISHED = (
    ("ResNet-50 fine-tuned, 224 px", "test", 0.884),
    ("Xception pretrained, 299 px (ML Zoomcamp)", "test", 0.898),
    ("MobileNetV2 frozen, 224 px", "validation", 0.815),
)


def print_published() -> None:
    print("\npublished, for reference (not measured here):")
    for name, split, accuracy in PUBLISHED:
        print(f"  {name:<44}{split:>12}{accuracy:>10.1%}")


def print_table(rows: list[dict]) -> None:
    classes = sorted({name for r in rows for name in r["per_class"]})
    print(f"\n{'model':<42}{'train':>8}{'photos':>8}{'accuracy':>10}" + "".join(f"{c[:9]:>10}" for c in classes))
    for r in rows:
        seconds = f"{r['train_s'] / 60:.1f} min" if r["train_s"] else "-"
        cells = "".join(f"{r['per_class'][c]:>10.1%}" if c in r["per_class"] else f"{'-':>10}" for c in classes)
        print(f"{r['name']:<42}{seconds:>8}{r['images']:>8}{r['accuracy']:>10.2%}{cells}")


def print_int8(quantization: dict, bench: dict, quantize_seconds: float) -> None:
    methods = quantization["methods"]
    best = quantization["best_int8"]
    print(f"\nint8 of (d) ({best}), quantized and benchmarked in {quantize_seconds:.0f} s:")
    for method in ("fp32", best):
        entry = methods[method]
        size = min(f["bytes"] for f in entry["files"].values())
        timing = bench["best"]["fp32" if method == "fp32" else "int8"]
        single, batch = timing["single"], timing["batch"]
        print(f"  {method:<8} accuracy {entry['accuracy']:.2%}  agreement {entry['agreement']:.2%}  "
              f"{size / 1e6:.2f} MB  batch 1 {single['latency_us']['median']:,.0f} us ({single['backend']})  "
              f"batch {bench['large_batch']} {batch['images_per_s']:,.0f} images/s ({batch['backend']})")  # fmt: skip


if __name__ == "__main__":
    main()
