"""What the model sees: photos beside their Fashion-MNIST and garment preprocessing, as one picture.

    .venv/bin/python benchmarks/preprocessing_pictures.py [--out docs/images/preprocessing.png]

The photos are the first of each Fashion-MNIST-like class in tests/data/clothing-small-sample (CC0, from
clothing-dataset-small): garments on floors, beds and hangers, and shoes in pairs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from matplotlib.figure import Figure

from fashionclf.preprocess import InputFormat, open_image

SAMPLE = Path(__file__).resolve().parents[1] / "tests" / "data" / "clothing-small-sample" / "train"
CLASSES = ("t-shirt", "pants", "dress", "outwear", "shirt", "longsleeve", "shoes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images/preprocessing.png"))
    args = parser.parse_args()
    photos = [open_image(sorted((SAMPLE / name).iterdir())[0], name) for name in CLASSES]
    rows = {"photo": photos}
    for preprocessing in ("fashion-mnist", "garment"):
        rows[preprocessing] = [InputFormat(preprocessing).prepare(photo)[0] for photo in photos]
    figure = Figure(figsize=(1.6 * len(CLASSES), 5.2))
    axes = figure.subplots(len(rows), len(CLASSES))
    for row, (label, pictures) in enumerate(rows.items()):
        for column, picture in enumerate(pictures):
            axis = axes[row, column]
            axis.imshow(picture, cmap="gray", vmin=0, vmax=255)
            axis.set_xticks([]), axis.set_yticks([])
            if row == 0:
                axis.set_title(CLASSES[column], fontsize=9)
            if column == 0:
                axis.set_ylabel(label, fontsize=9)
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=80)
    print(args.out)


if __name__ == "__main__":
    main()
