"""Load benchmark of `fashionclf serve` against the usual way of serving a model, in one run on 127.0.0.1.

    .venv/bin/python benchmarks/load_serve.py runs/seed [--requests 600] [--seconds 10]

The peer, "the usual way", is what tutorials write: a plain `def` FastAPI endpoint (FastAPI runs it in its thread
pool) that decodes each upload and calls the model once per upload. It is measured twice: with the run's PyTorch
checkpoint (best.pt, eager fp32), as tutorials load it, and with the same model files and backends that
`fashionclf serve` picks, so that the serving architecture is compared on its own. Every server runs alone in its
own process, one uvicorn worker each, started and stopped in turn. For each: requests/s and latency percentiles at
1, 8 and 32 concurrent clients sending a 400x300 JPEG, then the latency of GET /health while 8 clients upload
2000x2000 JPEGs. Traffic stays on the loopback interface.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from fastapi import FastAPI, UploadFile  # at module level: FastAPI resolves the endpoint's annotations here
from PIL import Image

CLIENTS = (1, 8, 32)
UPLOADERS = 8
HEALTH_EVERY_S = 0.02


def photo(width: int, height: int, seed: int = 0) -> bytes:
    """A JPEG with a photo's texture (a lit, noisy background and a garment), so that it decodes like one."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width]
    pixels = 170 + 50 * (cols / width) + rng.normal(0, 12, (height, width))
    pixels[height // 6 : 5 * height // 6, 3 * width // 8 : 5 * width // 8] -= 120
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).convert("RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def usual_app(model: str, same_backends: bool):
    """The peer: a plain `def` endpoint, one model call per upload."""
    import torch

    from fashionclf.checkpoint import load_model
    from fashionclf.datasets import to_float
    from fashionclf.inference import load_classifier
    from fashionclf.preprocess import FASHION_MNIST_CLASSES, FASHION_MNIST_INPUT, open_image
    from fashionclf.rundir import RunDir

    if same_backends:
        classifier = load_classifier(Path(model))

        def probabilities(images):
            return classifier.probabilities(images)[0]
    else:
        network = load_model(RunDir(Path(model)).best_checkpoint)[0]

        def probabilities(images):
            with torch.no_grad():
                return torch.softmax(network(to_float(torch.from_numpy(images))), dim=1)[0].numpy()

    app = FastAPI()

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.post("/predict")
    def predict(files: list[UploadFile]) -> dict:
        answers = []
        for upload in files:
            image = FASHION_MNIST_INPUT.prepare(open_image(upload.file.read(), upload.filename or "upload"))
            row = probabilities(image[None])
            answers.append({"file": upload.filename, "class": FASHION_MNIST_CLASSES[int(row.argmax())]})
        return {"predictions": answers}

    return app


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(command: list[str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    server = subprocess.Popen([*command, "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"{' '.join(command)}: exited with code {server.returncode}")
        try:
            if httpx.get(url + "health", timeout=1).status_code == 200:
                return server, url
        except httpx.HTTPError:
            time.sleep(0.2)
    sys.exit(f"{' '.join(command)}: did not come up")


async def upload(session: httpx.AsyncClient, url: str, body: bytes) -> bool:
    try:
        answer = await session.post(url + "predict", files=[("files", ("photo.jpg", body, "image/jpeg"))])
        return answer.status_code == 200
    except httpx.HTTPError:
        return False


async def load(url: str, requests: int, clients: int, body: bytes) -> dict:
    """`requests` uploads from `clients` concurrent clients: throughput, latency percentiles, errors."""
    latencies: list[float] = []
    errors = 0
    remaining = requests

    async def client(session: httpx.AsyncClient) -> None:
        nonlocal remaining, errors
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            errors += not await upload(session, url, body)
            latencies.append(time.perf_counter() - started)

    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=clients), timeout=120) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return {"requests_per_s": requests / elapsed, **percentiles(latencies), "errors": errors}


async def health_under_load(url: str, seconds: float, body: bytes) -> dict:
    """GET /health every 20 ms while UPLOADERS clients upload `body` without pause."""
    stop = time.monotonic() + seconds
    latencies: list[float] = []
    uploads, errors = 0, 0

    async def uploader(session: httpx.AsyncClient) -> None:
        nonlocal uploads, errors
        while time.monotonic() < stop:
            errors += not await upload(session, url, body)
            uploads += 1

    async def prober(session: httpx.AsyncClient) -> None:
        nonlocal errors
        while time.monotonic() < stop:
            started = time.perf_counter()
            try:
                errors += (await session.get(url + "health")).status_code != 200
            except httpx.HTTPError:
                errors += 1
            latencies.append(time.perf_counter() - started)
            await asyncio.sleep(HEALTH_EVERY_S)

    async with httpx.AsyncClient(timeout=120) as uploads_session, httpx.AsyncClient(timeout=120) as probe_session:
        await asyncio.gather(*(uploader(uploads_session) for _ in range(UPLOADERS)), prober(probe_session))
    return {**percentiles(latencies), "uploads_per_s": uploads / seconds, "errors": errors}


def percentiles(latencies: list[float]) -> dict:
    cuts = statistics.quantiles(latencies, n=100)
    return {"p50_ms": 1000 * cuts[49], "p99_ms": 1000 * cuts[98], "max_ms": 1000 * max(latencies)}


def measure(command: list[str], args: argparse.Namespace, small: bytes, large: bytes) -> dict:
    server, url = start(command)
    try:
        asyncio.run(load(url, 50, 4, small))  # warm-up: first calls build kernels and caches
        result = {clients: asyncio.run(load(url, args.requests, clients, small)) for clients in CLIENTS}
        result["health"] = asyncio.run(health_under_load(url, args.seconds, large))
        return result
    finally:
        server.terminate()
        server.wait(timeout=30)


def report(results: dict[str, dict]) -> None:
    names = list(results)
    print(f"\n{'server':<42}" + "".join(f"{f'{c} client(s): req/s  p50  p99 ms':>36}" for c in CLIENTS))
    for name in names:
        cells = "".join(
            f"{r['requests_per_s']:>18,.0f} {r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f}{'' if not r['errors'] else ' E'}"
            for r in (results[name][c] for c in CLIENTS)
        )
        print(f"{name:<42}{cells}")
    print(f"\nGET /health while {UPLOADERS} clients upload 2000x2000 JPEGs:")
    for name in names:
        h = results[name]["health"]
        print(f"  {name:<40} p50 {h['p50_ms']:6.1f} ms  p99 {h['p99_ms']:7.1f} ms  max {h['max_ms']:7.1f} ms  "
              f"({h['uploads_per_s']:.1f} uploads/s, {h['errors']} errors)")  # fmt: skip
    ours, peers = results[names[0]], names[1:]
    print("\nGoals (fashionclf serve against each peer):")
    print(f"  /health p99 under load <= 50 ms: {ours['health']['p99_ms']:.1f} ms")
    for peer in peers:
        ratio = ours[32]["requests_per_s"] / results[peer][32]["requests_per_s"]
        lower = ours[32]["p99_ms"] < results[peer][32]["p99_ms"]
        print(f"  32 clients vs {peer}: {ratio:.2f}x requests/s (goal >= 1.5), p99 lower: {lower}")
    errors = sum(r[c]["errors"] for r in results.values() for c in CLIENTS) + ours["health"]["errors"]
    print(f"  errors: {errors}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a run directory (the peers read its best.pt and model files)")
    parser.add_argument("--requests", type=int, default=600, help="requests per concurrency level")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the /health measurement")
    parser.add_argument("--usual", choices=("eager", "same-backends"), help=argparse.SUPPRESS)  # a peer server
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.usual:
        import uvicorn

        app = usual_app(args.model, same_backends=args.usual == "same-backends")
        uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
        return
    small, large = photo(300, 400), photo(2000, 2000, seed=1)
    print(f"{args.requests} requests per level; a 400x300 JPEG of {len(small):,} bytes, a 2000x2000 of {len(large):,}")
    servers = {
        "fashionclf serve": [sys.executable, "-m", "fashionclf", "serve", args.model],
        "usual way: def endpoint, PyTorch best.pt": [sys.executable, __file__, args.model, "--usual", "eager"],
        "usual way: def endpoint, serve's backends": [sys.executable, __file__, args.model, "--usual", "same-backends"],
    }
    report({name: measure(command, args, small, large) for name, command in servers.items()})


if __name__ == "__main__":
    main()
