"""Shared fixtures: the real dataset, one short real training run that several test modules read, and a run
directory held by another process, and local HTTP mirrors."""

import http.server
import os
import shutil
import subprocess
import sys
import threading
from functools import partial
from pathlib import Path

import pytest
import torch
from filelock import FileLock

from fashionclf import data as fmnist
from fashionclf.config import TrainConfig
from fashionclf.datasets import Dataset, Split
from fashionclf.rundir import RunDir
from fashionclf.train import train

if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest-xdist's workers share the cores: each takes its share of threads (its CLI children too, through
    # OMP_NUM_THREADS), rather than every worker's torch spinning a thread per core against the others'.
    THREADS = max(1, len(os.sched_getaffinity(0)) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    torch.set_num_threads(THREADS)
    os.environ["OMP_NUM_THREADS"] = str(THREADS)


@pytest.fixture(scope="session")
def real_data():
    if fmnist.find_data_dir() is None:
        pytest.skip("Fashion-MNIST is not installed (make test installs it)")
    return fmnist.load_fashion_mnist()


def shared_run(tmp_path_factory, name: str, build) -> RunDir:
    """The run directory `name`, built once per test session: with pytest-xdist's workers, the first to ask builds
    it (into a scratch folder, renamed when complete) while the others wait on a lock, then all read it."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the folder the workers' own temporary folders share
    done = root / "shared-runs" / name
    with FileLock(str(done) + ".lock"):
        if not done.exists():
            scratch = done.with_name(name + ".building")
            shutil.rmtree(scratch, ignore_errors=True)
            scratch.parent.mkdir(parents=True, exist_ok=True)
            build(scratch)
            scratch.rename(done)
    return RunDir(done)


@pytest.fixture(scope="session")
def trained_run(real_data, tmp_path_factory):
    """Two epochs on 10,000 real training images (200 batches of 100), 1,000 held out for validation."""

    def build(out: Path) -> None:
        subset = Split(real_data.train.images[:11_000], real_data.train.labels[:11_000])
        data = Dataset(subset, real_data.test, real_data.directory, real_data.origin, real_data.checksums)
        train(TrainConfig(epochs=2, validation_size=1000, device="cpu"), out, data=data, progress=False)

    return shared_run(tmp_path_factory, "short", build)


@pytest.fixture(scope="session")
def quantized_run(trained_run, tmp_path_factory):
    """A copy of the short run (others read the original unquantized), quantized by the default methods (static
    int8 agrees with fp32 enough that quantization-aware training does not start; its own test starts it)."""
    from fashionclf import quantize

    def build(out: Path) -> None:
        shutil.copytree(trained_run.root, out)
        quantize.quantize_run(out)

    return shared_run(tmp_path_factory, "quantized", build)


HOLD = """
import sys, time
from fashionclf.rundir import locked
with locked(sys.argv[1], "fashionclf train"):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def held_run(tmp_path):
    """A run directory whose lock another process holds, as `fashionclf train` would: (its path, that process)."""
    run = tmp_path / "held"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield run, holder
    finally:
        holder.kill()
        holder.wait()


class Mirror:
    """A local HTTP server on 127.0.0.1 serving a folder; files absent there answer 404."""

    def __init__(self, folder: Path):
        handler = partial(_QuietHandler, directory=str(folder))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        # A short poll interval: shutdown() waits up to one interval, 0.5 s by default, for every mirror.
        threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def mirrors(tmp_path):
    started = []

    def start(folder: Path) -> str:
        started.append(Mirror(folder))
        return started[-1].url

    yield start
    for mirror in started:
        mirror.close()
