"""What heat maps cost: a request to POST /predict with and without `explain=true`, side by side, per model.

    .venv/bin/python benchmarks/explain_cost.py runs/seed runs/resnet fashion_cnn efficientnet_lite0 [--requests 20]

Each argument is a run directory (served as `fashionclf serve` serves it: its fastest files and backends for the
predictions, its best.pt for the heat maps) or a registered model's name (built untrained, with its packaged
ImageNet weights where it has them, and served in PyTorch: the cost does not depend on the weights' values). One
400x300 JPEG a request, sent one request at a time through the app in this process (no network), as the page sends
it (`top_k=10`); the median of `--requests` requests after two warm-up ones, the heat maps alone (the top 3 classes
of one picture), and the answer's size.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from fastapi.testclient import TestClient
from load_serve import photo  # the same photo-like JPEG as the load benchmark

from fashionclf.explain import Explainer, explainer_for, load_explainer
from fashionclf.inference import Classifier, load_classifier
from fashionclf.models import create_model, model_entry
from fashionclf.serve import EXPLAINED, create_app


def served(argument: str) -> tuple[Classifier, Explainer]:
    if Path(argument).is_dir():
        classifier = load_classifier(Path(argument))
        return classifier, load_explainer(Path(argument), classifier.spec)
    entry = model_entry(argument)
    spec = entry.spec()
    model = create_model(argument, spec).eval()
    if entry.pretrained:
        model.load_imagenet_weights()  # type: ignore[operator]
    return Classifier(backend=model, description=f"untrained {argument}", spec=spec), explainer_for(model, spec)


def request_seconds(client: TestClient, query: str, upload: bytes, requests: int) -> tuple[float, int]:
    """The median seconds a request, and the answer's bytes."""
    times, size = [], 0
    for index in range(requests + 2):
        start = time.perf_counter()
        answer = client.post(f"/predict?{query}", files=[("files", ("photo.jpg", upload, "image/jpeg"))])
        elapsed = time.perf_counter() - start
        if answer.status_code != 200:
            sys.exit(f"POST /predict?{query}: {answer.status_code} {answer.text}")
        size = len(answer.content)
        if index >= 2:
            times.append(elapsed)
    return statistics.median(times), size


def heat_map_seconds(explainer: Explainer, upload: bytes, requests: int) -> float:
    from fashionclf.preprocess import open_image

    image = explainer.spec.input.prepare(open_image(upload, "photo.jpg"))[None]
    classes = np.arange(EXPLAINED)[None]
    times = []
    for _ in range(max(3, requests // 4)):
        start = time.perf_counter()
        explainer.heat_maps(image, classes)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="run directories or registered model names")
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    upload = photo(400, 300)
    print(f"torch threads: {torch.get_num_threads()}; one 400x300 JPEG a request, top_k=10, heat maps of the top "
          f"{EXPLAINED}; median of {args.requests} requests\n")  # fmt: skip
    print("| model | heat maps by | request | request with explain=true | heat maps alone | answer | with |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for argument in args.models:
        classifier, explainer = served(argument)
        with TestClient(create_app(classifier, explainer=lambda explainer=explainer: explainer)) as client:
            plain, plain_size = request_seconds(client, "top_k=10", upload, args.requests)
            explained, explained_size = request_seconds(client, "top_k=10&explain=true", upload, args.requests)
        alone = heat_map_seconds(explainer, upload, args.requests)
        times = [f"{1000 * seconds:.1f} ms" for seconds in (plain, explained, alone)]
        cells = [argument, explainer.method, *times, f"{plain_size / 1024:.1f} KiB", f"{explained_size / 1024:.1f} KiB"]
        print(f"| {' | '.join(cells)} |", flush=True)


if __name__ == "__main__":
    main()
