import json
import math
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from fashionclf.checkpoint import load_checkpoint
from fashionclf.config import TrainConfig
from fashionclf.errors import FashionClfError
from fashionclf.rundir import write_json
from fashionclf.runtime import bf16_supported
from fashionclf.train import ema_with_warmup, resume, train

from synthetic import band_photos, csv_run, synthetic_data, synthetic_split, write_csv

SMALL = dict(epochs=3, batch_size=50, validation_size=100, device="cpu")


def weights(path: Path) -> dict:
    return load_checkpoint(path)["state_dict"]


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_training_writes_a_complete_run_directory(tmp_path):
    run = train(TrainConfig(**SMALL), tmp_path / "run", data=synthetic_data(), progress=False)
    config = json.loads(run.config.read_text())
    assert config["train"]["epochs"] == 3 and config["train"]["lr"] == 1e-3
    assert config["environment"]["versions"]["torch"] == torch.__version__
    assert config["environment"]["device"] == "cpu"
    assert config["data"]["origin"] == "--data-dir"
    history = json.loads(run.history_json.read_text())
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert run.history_csv.read_text().splitlines()[0].startswith("epoch,train_loss,train_accuracy,val_loss")
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_accuracy"] > 0.5
    best = load_checkpoint(run.best_checkpoint)
    assert best["metrics"]["val_accuracy"] == max(row["val_accuracy"] for row in history)
    assert load_checkpoint(run.last_checkpoint)["epoch"] == 3
    assert "epoch 3/3" in run.log.read_text()
    assert not list(run.root.rglob("*.tmp"))


def test_a_seed_fixes_the_run(tmp_path):
    data = synthetic_data()
    a = train(TrainConfig(**SMALL), tmp_path / "a", data=data, progress=False)
    b = train(TrainConfig(**SMALL), tmp_path / "b", data=data, progress=False)
    c = train(TrainConfig(**SMALL, seed=1), tmp_path / "c", data=data, progress=False)
    assert_same_weights(weights(a.last_checkpoint), weights(b.last_checkpoint))
    assert not torch.equal(weights(a.last_checkpoint)["fc3.weight"], weights(c.last_checkpoint)["fc3.weight"])


def interrupt_after_epoch(monkeypatch, epoch: int) -> None:
    """Make training raise KeyboardInterrupt (as Ctrl-C would) right after `epoch` is saved."""
    import fashionclf.train as training

    real_end_epoch = training._end_epoch

    def end_epoch_then_stop(training_, state, row):
        real_end_epoch(training_, state, row)
        if row["epoch"] == epoch:
            monkeypatch.setattr(training, "_end_epoch", real_end_epoch)
            raise KeyboardInterrupt

    monkeypatch.setattr(training, "_end_epoch", end_epoch_then_stop)


@pytest.mark.parametrize(
    "augmentation",
    [
        {},
        {"crop_padding": 2, "flip": True, "erase": 0.5},
        {"optimizer": "sgd", "lr": 0.05, "schedule": "onecycle", "label_smoothing": 0.1},
        {"optimizer": "adamw", "weight_decay": 1e-4, "schedule": "cosine"},
        {"ema": 0.9},
        {"corrupt": {"pair": 0.5, "affine": 0.3, "background": 0.3, "noise": 0.3}},
    ],
)
def test_resume_after_an_interruption_gives_identical_weights(tmp_path, monkeypatch, augmentation):
    data = synthetic_data()
    whole = train(TrainConfig(**SMALL, **augmentation), tmp_path / "whole", data=data, progress=False)
    interrupt_after_epoch(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(**SMALL, **augmentation), tmp_path / "stopped", data=data, progress=False)
    assert load_checkpoint(tmp_path / "stopped" / "checkpoints" / "last.pt")["epoch"] == 2

    # The global RNG is disturbed on purpose: resume must restore it from the checkpoint.
    torch.manual_seed(12345)
    resumed = resume(tmp_path / "stopped", data=data, progress=False)
    assert_same_weights(weights(whole.last_checkpoint), weights(resumed.last_checkpoint))
    assert_same_weights(weights(whole.best_checkpoint), weights(resumed.best_checkpoint))
    assert [r["epoch"] for r in json.loads(resumed.history_json.read_text())] == [1, 2, 3]


def test_resume_after_kill_9_inside_an_epoch_gives_identical_weights(tmp_path):
    """A real process, killed with SIGKILL in the middle of its second epoch (after 3 of its 10 steps, with the
    optimizer, the moving average and the RNG all moved on since last.pt), then resumed in another process."""
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import fashionclf.train as training
        from synthetic import band_photos, csv_run, synthetic_data, synthetic_split, write_csv
        real, steps = training._gradients, []
        def stop_inside_epoch_2(state, *args):
            steps.append(1)
            if len(steps) == 10 + 3:
                print("inside-epoch-2", flush=True)
                time.sleep(60)
            return real(state, *args)
        if sys.argv[2] == "stop":
            training._gradients = stop_inside_epoch_2
        config = training.TrainConfig(epochs=3, batch_size=50, validation_size=100, device="cpu", ema=0.9, flip=True)
        run = training.train(config, sys.argv[1], data=synthetic_data(), progress=False) if sys.argv[3] == "new" \\
              else training.resume(sys.argv[1], data=synthetic_data(), progress=False)
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = tmp_path / "killed"
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(out), "stop", "new"], stdout=subprocess.PIPE, env=env, text=True
    )
    deadline = time.monotonic() + 120
    while "inside-epoch-2" not in child.stdout.readline():
        assert time.monotonic() < deadline and child.poll() is None, "child never reached epoch 2"
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert load_checkpoint(out / "checkpoints" / "last.pt")["epoch"] == 1
    subprocess.run([sys.executable, "-c", script, str(out), "go", "resume"], env=env, check=True, capture_output=True)
    whole = train(TrainConfig(**SMALL, ema=0.9, flip=True), tmp_path / "whole", data=synthetic_data(), progress=False)
    assert_same_weights(weights(whole.last_checkpoint), weights(out / "checkpoints" / "last.pt"))


def test_a_diverging_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    """Epoch 1 trains normally; then the learning rate is raised to 1e30 and the loss really diverges in epoch 2."""
    import fashionclf.train as training

    real_end_epoch = training._end_epoch

    def end_epoch_then_raise_the_rate(training_, state, row):
        real_end_epoch(training_, state, row)
        for group in state.optimizer.param_groups:
            group["lr"] = 1e30

    monkeypatch.setattr(training, "_end_epoch", end_epoch_then_raise_the_rate)
    with pytest.raises(FashionClfError, match="training diverged: loss is (nan|inf) at epoch 2/5, batch"):
        train(TrainConfig(**{**SMALL, "epochs": 5}), tmp_path / "run", data=synthetic_data(), progress=False)
    last = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert last["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in last["state_dict"].values() if t.is_floating_point())
    assert "kept in" in (tmp_path / "run" / "train.log").read_text()


def test_an_existing_run_is_not_overwritten(tmp_path):
    data = synthetic_data()
    train(TrainConfig(epochs=1, batch_size=100, validation_size=100), tmp_path / "run", data=data, progress=False)
    before = (tmp_path / "run" / "checkpoints" / "last.pt").read_bytes()
    with pytest.raises(FashionClfError, match="already holds a run"):
        train(TrainConfig(epochs=1), tmp_path / "run", data=data, progress=False)
    assert (tmp_path / "run" / "checkpoints" / "last.pt").read_bytes() == before


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"epochs": 0}, "--epochs"),
        ({"batch_size": 0}, "--batch-size"),
        ({"lr": -1.0}, "--lr must be a positive number, got -1.0"),
        ({"lr": math.inf}, "--lr must be a positive number, got inf"),
        ({"lr": "0.1"}, "--lr must be a positive number, got '0.1'"),  # a hand-edited config.json
        ({"label_smoothing": 2.0}, r"--label-smoothing must be in \[0, 1\), got 2.0"),
        ({"label_smoothing": 1.0}, r"--label-smoothing must be in \[0, 1\), got 1.0"),
        ({"weight_decay": -1.0}, "--weight-decay must be 0 or more, got -1.0"),
        ({"weight_decay": math.nan}, "--weight-decay must be 0 or more, got nan"),
        ({"ema": 1.0}, r"--ema must be a decay in \[0, 1\), got 1.0"),
        ({"rotate": math.nan}, "--rotate must be 0 or more, got nan"),
        ({"erase": 1.5}, r"--erase must be a probability in \[0, 1\], got 1.5"),
        ({"crop_scale": -0.1}, r"--crop-scale must be in \[0, 1\], got -0.1"),
        ({"jitter": 2.0}, r"--jitter must be in \[0, 1\], got 2.0"),
        ({"crop_padding": -1}, "--crop-padding must be 0 or more, got -1"),
        ({"seed": -1}, r"--seed must be in \[0, 2\^32\), got -1"),
        ({"seed": 2**64}, r"--seed must be in \[0, 2\^32\)"),
        ({"mix_fashion_mnist": -5, "init": "runs/base"}, "--mix-fashion-mnist must be 0 or more, got -5"),
        ({"model": "photo_resnet9", "image_size": 0}, "--image-size must be a multiple of 16 from 16 to 512, got 0"),
        ({"model": "photo_resnet9", "image_size": 100}, "--image-size must be a multiple of 16 from 16 to 512"),
        # Values of the wrong type, as a config.json edited by hand or given to --config may hold.
        ({"flip": "yes"}, "--flip must be true or false, got 'yes'"),
        ({"batch_size": 1.5}, "--batch-size must be a whole number, got 1.5"),
        ({"validation_size": "100"}, "--validation-size must be a whole number, got '100'"),
        ({"final": True, "validation_size": 100}, "--final trains on every labelled split: --validation-size 100"),
        ({"optimizer": "lion"}, "--optimizer: unknown optimizer 'lion'; known: adam, adamw, sgd"),
        ({"corrupt": {"blur": "much"}}, r"--corrupt takes NAME=P, P in \[0, 1\]"),
        # Every augmentation changes pixels per epoch, so none goes with cached features, whichever is named.
        ({"model": "efficientnet_lite0", "frozen": True, "rotate": 5.0}, "--frozen .*: --rotate cannot apply"),
    ],
)
def test_bad_settings_are_refused(options, message):
    with pytest.raises(FashionClfError, match=message):
        TrainConfig(**options)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_run_resumes(tmp_path, monkeypatch):
    data = synthetic_data()
    config = TrainConfig(epochs=2, batch_size=50, validation_size=100, device="cuda")
    interrupt_after_epoch(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "run", data=data, progress=False)
    run = resume(tmp_path / "run", data=data, progress=False)
    assert load_checkpoint(run.last_checkpoint)["epoch"] == 2
    assert json.loads(run.config.read_text())["environment"]["device"].startswith("cuda")


def test_the_fast_recipe_trains_and_records_its_settings(tmp_path):
    config = TrainConfig.from_recipe("fast", epochs=3, batch_size=50, validation_size=100, device="cpu")
    run = train(config, tmp_path / "fast", data=synthetic_data(), progress=False)
    recorded = json.loads(run.config.read_text())["train"]
    assert recorded["recipe"] == "fast" and recorded["channels_last"] is True
    assert recorded["bf16"] == bf16_supported(torch.device("cpu"))
    assert json.loads(run.history_json.read_text())[-1]["val_accuracy"] > 0.5


def test_the_resnet_recipe_trains_the_residual_model(tmp_path):
    # Global pooling makes the bands' heights hard to tell apart: 4 epochs of smaller batches give it enough steps.
    settings = {**SMALL, "epochs": 4, "batch_size": 32, "lr": 0.05, "model_args": {"width": 4}}
    run = train(
        TrainConfig.from_recipe("resnet", **settings), tmp_path / "resnet", data=synthetic_data(), progress=False
    )
    recorded = json.loads(run.config.read_text())["train"]
    assert recorded["model"] == "resnet9" and recorded["optimizer"] == "sgd"
    assert load_checkpoint(run.best_checkpoint)["model"] == "resnet9"
    assert json.loads(run.history_json.read_text())[-1]["val_accuracy"] > 0.5


def test_the_robust_recipe_corrupts_the_batches_and_records_the_garment_preprocessing(tmp_path):
    data = synthetic_data()
    config = TrainConfig.from_recipe("robust", epochs=2, batch_size=50, validation_size=100, device="cpu")
    run = train(config, tmp_path / "robust", data=data, progress=False)
    recorded = json.loads(run.config.read_text())
    assert recorded["spec"]["preprocessing"] == "garment" and recorded["train"]["corrupt"] == config.corrupt
    assert load_checkpoint(run.best_checkpoint)["spec"]["preprocessing"] == "garment"
    clean = train(replace(config, corrupt={}), tmp_path / "clean", data=data, progress=False)
    loss = [json.loads(r.history_json.read_text())[0]["train_loss"] for r in (run, clean)]
    assert loss[0] > loss[1]  # corrupted batches are harder to fit


def test_an_unknown_recipe_is_refused():
    with pytest.raises(FashionClfError, match="unknown recipe 'turbo'; known: seed, fast, best, resnet"):
        TrainConfig.from_recipe("turbo")


def test_a_compiled_step_trains_like_the_eager_one(tmp_path):
    from torch._dynamo.utils import counters

    # Without dropout: compiled code draws its random masks from a generator of its own.
    settings = {**SMALL, "epochs": 1, "model_args": {"dropout": 0.0}}
    eager = train(TrainConfig(**settings), tmp_path / "eager", data=synthetic_data(), progress=False)
    counters.clear()
    compiled = train(
        TrainConfig(**settings, compile=True), tmp_path / "compiled", data=synthetic_data(), progress=False
    )
    assert counters["stats"]["unique_graphs"] >= 1  # something really was compiled
    assert "training eagerly" not in compiled.log.read_text()
    assert json.loads(compiled.config.read_text())["train"]["compile"] is True
    # Weights are not compared one by one: a conv bias before BatchNorm gets a gradient of rounding noise only,
    # which Adam turns into full-size steps of either sign.
    (before,), (after,) = (json.loads(run.history_json.read_text()) for run in (eager, compiled))
    assert after["train_loss"] == pytest.approx(before["train_loss"], rel=1e-3)
    assert after["val_loss"] == pytest.approx(before["val_loss"], rel=1e-2)


def test_a_compile_that_cannot_build_here_falls_back_to_eager_training(tmp_path):
    import torch._inductor.config

    # Inductor's own patch: monkeypatch's undo deleted the setting from the config module, and every later compile
    # in the process (quantize's int8 package, in the same pytest worker) failed with "cpp.cxx does not exist".
    with torch._inductor.config.patch({"cpp.cxx": ("/nonexistent/g++",)}):  # a machine with no C++ compiler
        torch._dynamo.reset()
        settings = {**SMALL, "epochs": 1, "model_args": {"dropout": 0.0}}
        run = train(TrainConfig(**settings, compile=True), tmp_path / "run", data=synthetic_data(), progress=False)
        torch._dynamo.reset()
    assert torch._inductor.config.cpp.cxx != ("/nonexistent/g++",)
    assert "torch.compile cannot build here (" in run.log.read_text() and "training eagerly" in run.log.read_text()
    assert json.loads(run.history_json.read_text())[0]["val_accuracy"] > 0.3


def test_a_start_that_finished_no_epoch_leaves_a_directory_that_a_new_run_takes_over(tmp_path, monkeypatch):
    import fashionclf.train as training

    def fail(*args):
        raise FashionClfError("the first step failed")

    monkeypatch.setattr(training, "train_epoch", fail)
    small = TrainConfig(epochs=1, batch_size=50, validation_size=0, device="cpu")
    with pytest.raises(FashionClfError, match="the first step failed"):
        train(replace(small, lr=0.5), tmp_path / "run", data=synthetic_data(train=100), progress=False)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["lr"] == 0.5
    monkeypatch.undo()
    run = train(small, tmp_path / "run", data=synthetic_data(train=100), progress=False)
    assert json.loads(run.config.read_text())["train"]["lr"] == small.lr
    assert load_checkpoint(run.last_checkpoint)["epoch"] == 1
    assert "an earlier start finished no epoch here; training anew, its config.json replaced" in run.log.read_text()


def test_resuming_a_start_whose_settings_fail_their_checks_says_how_to_start_again(tmp_path):
    """config.json as a version without the bound left it: written before the optimizer refused the value."""
    run = tmp_path / "run"
    write_json(run / "config.json", {"train": {"weight_decay": -1.0}})
    expected = f"{run / 'config.json'}: --weight-decay must be 0 or more, got -1.0; no epoch finished: train anew"
    with pytest.raises(FashionClfError, match=f"^{re.escape(expected)} with --out {re.escape(str(run))}, other"):
        resume(run, progress=False)


def test_resume_refuses_data_that_changed_since_the_run_started(tmp_path):
    run, csv = csv_run(tmp_path)
    write_csv(csv, synthetic_split(200, seed=7))
    with pytest.raises(FashionClfError, match=r"not the data .* \(data.csv has SHA-256 .*\); put back the data"):
        resume(run.root, progress=False)


def test_resume_without_last_pt_after_finished_epochs_is_refused(tmp_path):
    run = train(TrainConfig(**{**SMALL, "epochs": 2}), tmp_path / "run", data=synthetic_data(), progress=False)
    run.last_checkpoint.unlink()
    with pytest.raises(FashionClfError, match="last.pt is missing, but history.json and checkpoints/best.pt show"):
        resume(run.root, data=synthetic_data(), progress=False)


def test_a_last_pt_lacking_part_of_the_resume_state_is_one_error_naming_it(tmp_path):
    """best_val_accuracy was read without the check the other keys get: a KeyError instead of this line."""
    run = train(TrainConfig(**{**SMALL, "epochs": 1}), tmp_path / "run", data=synthetic_data(), progress=False)
    last = torch.load(run.last_checkpoint, weights_only=True)
    del last["best_val_accuracy"]
    torch.save(last, run.last_checkpoint)
    expected = f"{run.last_checkpoint}: not a resumable last.pt; it lacks best_val_accuracy"
    with pytest.raises(FashionClfError, match=f"^{re.escape(expected)}$"):
        resume(run.root, data=synthetic_data(), progress=False)


def test_without_validation_the_last_epoch_is_kept(tmp_path):
    config = TrainConfig(**{**SMALL, "validation_size": 0})
    run = train(config, tmp_path / "run", data=synthetic_data(), progress=False)
    assert load_checkpoint(run.best_checkpoint)["epoch"] == 3
    assert_same_weights(weights(run.best_checkpoint), weights(run.last_checkpoint))


def test_with_ema_best_pt_holds_the_averaged_weights(tmp_path):
    config = TrainConfig(**{**SMALL, "epochs": 1}, ema=0.9)  # one epoch: best.pt and last.pt are the same epoch
    run = train(config, tmp_path / "ema", data=synthetic_data(), progress=False)
    last = load_checkpoint(run.last_checkpoint)
    averaged = {k.removeprefix("module."): v for k, v in last["ema"].items() if k.startswith("module.")}
    assert_same_weights(load_checkpoint(run.best_checkpoint)["state_dict"], averaged)
    assert not torch.equal(averaged["fc1.weight"], last["state_dict"]["fc1.weight"])


def test_the_moving_average_forgets_the_initial_weights_early():
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(10.0)  # the initial weights
    averaged = torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=ema_with_warmup(0.999))
    averaged.update_parameters(model)  # the first update copies
    with torch.no_grad():
        model.weight.fill_(0.0)  # training moved far away
    for _ in range(1000):
        averaged.update_parameters(model)
    # With warm-up the initial weights keep next to nothing of the average; a constant 0.999 would leave them 37%.
    assert 0 <= averaged.module.weight.item() < 1e-3


def test_a_photo_folder_of_its_own_classes_trains_a_model_of_those_classes(tmp_path):
    band_photos(tmp_path / "photos")
    config = TrainConfig(**{**SMALL, "validation_size": None}, data=str(tmp_path / "photos"))
    run = train(config, tmp_path / "run", progress=False)
    recorded = json.loads(run.config.read_text())
    assert recorded["spec"]["classes"] == ["hat", "shoes", "skirt"] and recorded["train"]["validation_size"] == 30
    assert recorded["data"]["splits"]["validation"]["from"] == "validation/ of photos (30 photos)"
    best = load_checkpoint(run.best_checkpoint)
    assert best["spec"] == recorded["spec"] and best["state_dict"]["fc3.weight"].shape[0] == 3
    assert json.loads(run.history_json.read_text())[-1]["val_accuracy"] > 0.6


def test_init_from_a_run_of_other_classes_replaces_the_head(tmp_path):
    base = train(TrainConfig(**SMALL), tmp_path / "base", data=synthetic_data(), progress=False)
    band_photos(tmp_path / "photos")
    config = TrainConfig(epochs=1, batch_size=50, device="cpu", data=str(tmp_path / "photos"), init=str(base.root))
    tuned = train(config, tmp_path / "tuned", progress=False)
    assert "fresh: fc3.weight, fc3.bias" in tuned.log.read_text()
    weights = load_checkpoint(tuned.best_checkpoint)["state_dict"]
    assert weights["fc3.weight"].shape == (3, 120)
    summary = json.loads(tuned.finetune.read_text())
    assert summary["held_out"]["before"] is None and 0 <= summary["held_out"]["after"] <= 1
    assert "fashion_mnist_test" not in summary  # the model no longer answers in Fashion-MNIST's classes
