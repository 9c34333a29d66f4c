"""Shared fixtures: the real dataset, one short real training run that several test modules read, and a run
directory held by another process, and local HTTP mirrors."""

import http.server
import shutil
import subprocess
import sys
import threading
from functools import partial
from pathlib import Path

import pytest

from fashionclf import data as fmnist
from fashionclf.config import TrainConfig
from fashionclf.rundir import RunDir
from fashionclf.train import train


@pytest.fixture(scope="session")
def real_data():
    if fmnist.find_data_dir() is None:
        pytest.skip("Fashion-MNIST is not installed (make test installs it)")
    return fmnist.load_fashion_mnist()


@pytest.fixture(scope="session")
def trained_run(real_data, tmp_path_factory):
    """Two epochs on 10,000 real training images (200 batches of 100), 1,000 held out for validation."""
    subset = fmnist.Split(real_data.train.images[:11_000], real_data.train.labels[:11_000])
    data = fmnist.Dataset(subset, real_data.test, real_data.directory, real_data.origin, real_data.checksums)
    config = TrainConfig(epochs=2, validation_size=1000, device="cpu")
    return train(config, tmp_path_factory.mktemp("runs") / "short", data=data, progress=False)


@pytest.fixture(scope="session")
def quantized_run(trained_run, tmp_path_factory):
    """A copy of the short run (others read the original unquantized), quantized by the default methods (static
    int8 agrees with fp32 enough that quantization-aware training does not start; its own test starts it)."""
    from fashionclf import quantize

    run = RunDir(tmp_path_factory.mktemp("runs") / "quantized")
    shutil.copytree(trained_run.root, run.root)
    quantize.quantize_run(run.root)
    return run


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
