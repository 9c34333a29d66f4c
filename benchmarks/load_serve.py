"""Load benchmark of `fashionclf serve`: N requests from C concurrent clients on 127.0.0.1.

    .venv/bin/python benchmarks/load_serve.py runs/seed [--requests 2000] [--clients 32]

Starts the server as a user would (a separate process), sends one JPEG per request, and prints throughput,
latency percentiles and the error count. Traffic stays on the loopback interface.
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

import httpx
import numpy as np
from PIL import Image


def picture() -> bytes:
    pixels = np.full((400, 300), 235, dtype=np.uint8)
    pixels[60:340, 110:190] = 30
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_up(url: str, server: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"server exited with code {server.returncode}")
        try:
            if httpx.get(url + "health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    sys.exit("server did not come up")


async def load(url: str, requests: int, clients: int, body: bytes) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)

    async def client(session: httpx.AsyncClient) -> None:
        nonlocal errors
        while not queue.empty():
            queue.get_nowait()
            started = time.perf_counter()
            try:
                answer = await session.post(url + "predict", files=[("files", ("shirt.jpg", body, "image/jpeg"))])
                ok = answer.status_code == 200
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - started)
            errors += not ok

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=60) as session:
        await asyncio.gather(*(client(session) for _ in range(clients)))
    return latencies, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="run directory or model file")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    server = subprocess.Popen(
        [sys.executable, "-m", "fashionclf", "serve", args.model, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_up(url, server)
        started = time.perf_counter()
        latencies, errors = asyncio.run(load(url, args.requests, args.clients, picture()))
        elapsed = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=30)
    cuts = statistics.quantiles(latencies, n=100)
    print(f"{args.requests} requests, {args.clients} concurrent clients, 127.0.0.1, one uvicorn worker")
    print(f"errors      {errors}")
    print(f"throughput  {args.requests / elapsed:,.0f} requests/s ({elapsed:.1f} s)")
    print(
        f"latency     p50 {1000 * cuts[49]:.1f} ms   p99 {1000 * cuts[98]:.1f} ms   max {1000 * max(latencies):.1f} ms"
    )


if __name__ == "__main__":
    main()
