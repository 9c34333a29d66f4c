"""Data-parallel training: two CPU processes started by torchrun (gloo) against one, and one process stepping on parts
of each batch (--micro-batch), on a small CSV written here."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from fashionclf import distributed
from fashionclf.checkpoint import load_checkpoint, load_model
from fashionclf.config import TrainConfig
from fashionclf.errors import FashionClfError
from fashionclf.sources import read_csv
from fashionclf.train import evaluate_split, train

from synthetic import synthetic_data, synthetic_split, write_csv

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="this PyTorch build has no gloo backend"
)
FASHIONCLF = ["-m", "fashionclf"]
# fashionclf with tiny_conv registered: no BatchNorm, no dropout, so two processes must match one.
TINY_CONV_CLI = [str(Path(__file__).with_name("tiny_model_cli.py"))]


def fashionclf(program: list[str], *args, processes: int) -> subprocess.CompletedProcess:
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    # One thread per process: two processes share this machine's cores, and the runs stay small. torchrun leaves
    # its log folders in the temporary folder: one of the test's own, removed after it.
    with tempfile.TemporaryDirectory() as scratch:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1", "TMPDIR": scratch}
        result = subprocess.run(
            [*launcher, *program, *map(str, args)], env=env, capture_output=True, text=True, timeout=180
        )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture
def small_csv(tmp_path) -> Path:
    path = tmp_path / "small.csv"
    write_csv(path, synthetic_split(300, seed=3))
    return path


def test_two_processes_train_the_same_weights_as_one(tmp_path, small_csv):
    # 245 training images in batches of 20: the last batch of 5 splits unevenly (3 and 2 images), and augmentation
    # is on, so every process must draw the same order and augmentation and weight its share of the loss.
    options = ["train", "--model", "tiny_conv", "--data", small_csv, "--epochs", 2, "--batch-size", 20]
    options += ["--validation-size", 55, "--device", "cpu", "--crop-padding", 2, "--flip", "--erase", 0.5]
    # float32 throughout: bf16 rounds each process's half-batch differently, far above the summation order's error.
    options += ["--no-bf16", "--no-channels-last"]
    fashionclf(TINY_CONV_CLI, *options, "--out", tmp_path / "one", processes=1)
    two = fashionclf(TINY_CONV_CLI, *options, "--out", tmp_path / "two", processes=2)
    # The same steps in two processes from parts of 3, 3, 3 and 1 images (the last batch's 3 and 2 in one each),
    # each process's gradients kept local until its last part.
    fashionclf(TINY_CONV_CLI, *options, "--micro-batch", 3, "--out", tmp_path / "parts", processes=2)

    one_weights = load_checkpoint(tmp_path / "one" / "checkpoints" / "last.pt")["state_dict"]
    for run in ("two", "parts"):
        weights = load_checkpoint(tmp_path / run / "checkpoints" / "last.pt")["state_dict"]
        assert weights.keys() == one_weights.keys()  # the unwrapped model's: no DistributedDataParallel prefix
        for key in one_weights:
            # Not bit for bit: the gradient is summed in another order. Adam divides by the root of its second
            # moment, which can magnify that rounding in a weight or two, hence the tolerance.
            torch.testing.assert_close(weights[key], one_weights[key], rtol=1e-4, atol=1e-5)

    one_history = json.loads((tmp_path / "one" / "history.json").read_text())
    for run in ("two", "parts"):
        for a, b in zip(one_history, json.loads((tmp_path / run / "history.json").read_text()), strict=True):
            assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
            assert (b["train_accuracy"], b["val_accuracy"]) == (a["train_accuracy"], a["val_accuracy"])
    environment = json.loads((tmp_path / "two" / "config.json").read_text())["environment"]
    assert (environment["world_size"], environment["backend"]) == (2, "gloo")
    # Rank 0 alone logs and reports.
    assert (tmp_path / "two" / "train.log").read_text().count("epoch 2/2") == 1
    assert two.stdout.count("run directory:") == 1


def test_two_processes_train_fashion_cnn_with_batchnorm(tmp_path, small_csv):
    """No exactness claimed: on CPU each process normalises its slice with the slice's own BatchNorm statistics."""
    out = tmp_path / "cnn"
    options = ["--data", small_csv, "--epochs", 2, "--batch-size", 20, "--validation-size", 60, "--device", "cpu"]
    fashionclf(FASHIONCLF, "train", *options, "--out", out, processes=2)

    history = json.loads((out / "history.json").read_text())
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_accuracy"] > 0.5
    model, checkpoint = load_model(out / "checkpoints" / "best.pt")  # strict load into a plain FashionCNN
    _, accuracy = evaluate_split(model, read_csv(small_csv), batch_size=100, device=torch.device("cpu"))
    assert accuracy > 0.5
    assert checkpoint["metrics"]["val_accuracy"] == max(row["val_accuracy"] for row in history)


@pytest.mark.parametrize(
    ("images", "batch_size", "message"),
    [
        (240, 25, "--batch-size 25 is not divisible by the 2 processes"),
        (241, 20, "the last batch .* is smaller than the number of processes"),
    ],
)
def test_batches_that_leave_a_process_without_images_are_refused(monkeypatch, images, batch_size, message):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(FashionClfError, match=message):
        distributed.check_batches(images, batch_size)


def test_one_process_takes_any_batches(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    distributed.check_batches(241, 25)


def test_micro_batches_under_torchrun_are_refused_with_compile(monkeypatch, tmp_path):
    """Parts that differ in number between processes would all-reduce a different number of times: no_sync keeps it
    once a step, but not through torch.compile."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    config = TrainConfig(epochs=1, batch_size=20, micro_batch=3, compile=True, validation_size=0, device="cpu")
    with pytest.raises(FashionClfError, match="--micro-batch under torchrun runs eagerly: drop --compile"):
        train(config, tmp_path / "run", data=synthetic_data(200), progress=False)
