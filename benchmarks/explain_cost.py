"""What heat maps cost: a request to POST /predict with and without `explain=true`, side by side, per model.

    .venv/bin/python benchmarks/explain_cost.py runs/seed runs/resnet fashion_cnn efficientnet_lite0 [--requests 20]

Each argument is a run directory (served as `fashionclf serve` serves it: its fastest files and backends for the
predictions, its best.pt for the heat maps) or a registered model's name (built untrained, with its packaged
ImageNet weights where it has them, and served in PyTorch: the cost does not depend on the weights' values). One
400x300 JPEG a request, sent one request at a time through the app in this process (no network), as the page sends
it (`top_k=10`); the median of `--requests` requests after two warm-up ones, the heat maps alone (the top 3 classes
of one picture), and the answer's size. Each time is given as wall-clock time and as the CPU time the process spent
(all its threads): on a machine busy with other work the first grows, the second much less.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from fastapi.testclient import TestClient
from load_serve import photo  # the same photo-like JPEG as the load benchmark

from fashionclf.explain import Explainer, explainer_for, load_explainer
from fashionclf.inference import Classifier, load_classifier
from fashionclf.models import create_model, model_entry
from fashionclf.preprocess import open_image
from fashionclf.serve import EXPLAINED, create_app

T = TypeVar("T")


def served(argument: str) -> tuple[Classifier, Explainer]:
    if Path(argument).is_dir():
        classifier = load_classifier(Path(argument))
        return classifier, load_explainer(Path(argument), classifier.spec)
    entry = model_entry(argument)
    spec = entry.spec()
    model = create_model(argument, spec).eval()
    if entry.pretrained:
        model.load_imagenet_weights()  # type: ignore[operator]
    return Classifier(logits_of=model, description=f"untrained {argument}", spec=spec), explainer_for(model, spec)


def timed(call: Callable[[], T], repeats: int, warmup: int = 2) -> tuple[str, T]:
    """'wall / CPU' median milliseconds of `call`, and its last result."""
    walls, cpus = [], []
    result = call()
    for index in range(1, warmup + repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = call()
        if index >= warmup:
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
    return f"{1000 * statistics.median(walls):.1f} / {1000 * statistics.median(cpus):.1f} ms", result


def post(client: TestClient, query: str, upload: bytes) -> int:
    """The answer's bytes."""
    answer = client.post(f"/predict?{query}", files=[("files", ("photo.jpg", upload, "image/jpeg"))])
    if answer.status_code != 200:
        sys.exit(f"POST /predict?{query}: {answer.status_code} {answer.text}")
    return len(answer.content)


def measured(argument: str, upload: bytes, requests: int) -> list[str]:
    """The table's row for one model."""
    classifier, explainer = served(argument)
    with TestClient(create_app(classifier, explainer=lambda: explainer)) as client:
        plain, plain_size = timed(lambda: post(client, "top_k=10", upload), requests)
        explained, explained_size = timed(lambda: post(client, "top_k=10&explain=true", upload), requests)
    image = explainer.spec.input.prepare(open_image(upload, "photo.jpg"))[None]
    alone, _ = timed(lambda: explainer.heat_maps(image, np.arange(EXPLAINED)[None]), requests, warmup=1)
    sizes = [f"{size / 1024:.1f} KiB" for size in (plain_size, explained_size)]
    return [argument, explainer.method, plain, explained, alone, *sizes]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="run directories or registered model names")
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    upload = photo(400, 300)
    print(f"torch threads: {torch.get_num_threads()}; one 400x300 JPEG a request, top_k=10, heat maps of the top "
          f"{EXPLAINED}; median of {args.requests}; wall / CPU time\n")  # fmt: skip
    print("| model | heat maps by | request | request with explain=true | heat maps alone | answer | with |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for argument in args.models:
        print(f"| {' | '.join(measured(argument, upload, args.requests))} |", flush=True)


if __name__ == "__main__":
    main()
