"""The command line as a user meets it: real processes, exit codes and the one-line errors."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
from rich.text import Text
from typer.main import get_command
from typer.testing import CliRunner

from fashionclf.checkpoint import CHECKPOINT_FORMAT
from fashionclf.cli import _config, app
from fashionclf.config import TrainConfig
from fashionclf.errors import FashionClfError
from fashionclf.rundir import RunDir, write_json
from fashionclf.runtime import bf16_supported
from fashionclf.settings import declared, option_name

from synthetic import csv_run, synthetic_split, write_csv


def fashionclf(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fashionclf", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_help_lists_the_commands():
    result = fashionclf("--help")
    assert result.returncode == 0
    for command in ("data", "train", "evaluate", "report", "run"):
        assert command in result.stdout


def test_no_help_text_is_lost_to_rich_markup():
    """Rich reads "[default: ...]" as a markup tag and drops it from --help: such brackets are escaped."""
    for name, command in get_command(app).commands.items():  # type: ignore[attr-defined]
        for param in command.params:
            shown = Text.from_markup(getattr(param, "help", None) or "").plain
            assert shown == (getattr(param, "help", None) or "").replace("\\[", "["), f"{name} {param.name}"


# A preprocessing registered before the command line is built, as preprocess.py registers its own.
WITH_A_PREPROCESSING = """
from fashionclf.preprocess import register_preprocessing, to_dataset_domain

@register_preprocessing("negative", channels=1, sides=(28,), domain="fashion-mnist")
def negative(image, side):
    \"\"\"Fashion-MNIST's input with its levels inverted.\"\"\"
    return 255 - to_dataset_domain(image, side)

from fashionclf.cli import main
main()
"""


def test_the_preprocessings_are_listed_from_the_registry():
    result = subprocess.run([sys.executable, "-c", WITH_A_PREPROCESSING, "predict", "--help"], capture_output=True,
                            text=True, env={**os.environ, "COLUMNS": "2000"}, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    listed = " ".join(result.stdout.split())
    for name, description in [
        ("fashion-mnist", "A light garment on black filling the frame, as in Fashion-MNIST."),
        ("garment", "As fashion-mnist, the garment first separated from a cluttered background."),
        ("negative", "Fashion-MNIST's input with its levels inverted."),
        ("photo", "The photo in colour, fitted into the model's square, for photo models."),
    ]:
        assert f"{name}: {description}" in listed


# main() as `fashionclf` runs it, saying at its end whether torch was imported.
SAYS_IF_TORCH_WAS_IMPORTED = """
import sys
from fashionclf.cli import main
try:
    main()
finally:
    print("torch imported:", "torch" in sys.modules)
"""


@pytest.mark.parametrize("command", ["evaluate", "report", "analyze", "quantize", "bench", "export", "train --resume"])
def test_a_run_directory_is_checked_before_torch_is_imported(tmp_path, command):
    """A mistyped run directory is refused at once, not after the seconds that importing the stage takes."""
    extra = [str(tmp_path / "exported")] if command == "export" else []
    for run, problem in [(tmp_path / "nope", "run directory does not exist"), (tmp_path, "not a run directory")]:
        result = subprocess.run([sys.executable, "-c", SAYS_IF_TORCH_WAS_IMPORTED, *command.split(), str(run), *extra],
                                capture_output=True, text=True, timeout=120)  # fmt: skip
        assert_one_line_error(result, str(run), problem)
        assert result.stdout.strip() == "torch imported: False"


@pytest.mark.parametrize("command", ["predict", "serve"])
def test_a_missing_model_is_refused_before_torch_is_imported(tmp_path, command):
    pictures = ["picture.png"] if command == "predict" else []
    result = subprocess.run([sys.executable, "-c", SAYS_IF_TORCH_WAS_IMPORTED, command, str(tmp_path / "nope"),
                             *pictures], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert_one_line_error(result, str(tmp_path / "nope"), "model does not exist")
    assert result.stdout.strip() == "torch imported: False"


@pytest.mark.parametrize(
    ("command", "options", "fragment"),
    [
        ("train", ["--model", "nope"], "unknown model 'nope'"),
        ("train", ["--epochs", "0"], "--epochs must be at least 1"),
        ("train", ["--recipe", "photos", "--validation-size", "5"], "--final trains on every labelled split"),
        ("train", ["--model", "fashion_cnn", "--frozen"], "--frozen needs a pretrained model"),
        ("run", ["--recipe", "nope"], "unknown recipe 'nope'"),
    ],
)
def test_a_bad_training_option_is_refused_before_torch_is_imported(tmp_path, command, options, fragment):
    """Checking a config reads the model registry, which imports no torch: a mistyped option costs no seconds."""
    result = subprocess.run([sys.executable, "-c", SAYS_IF_TORCH_WAS_IMPORTED, command, *options, "--out",
                             str(tmp_path / "r")], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert_one_line_error(result, fragment)
    assert result.stdout.strip() == "torch imported: False"
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("setting", "fragment"),
    [("bogus=0.1", "NAME one of pair, affine"), ("blur=2", "P in [0, 1]"), ("blur=much", "--corrupt blur=much")],
)
def test_bad_corruptions(tmp_path, setting, fragment):
    assert_one_line_error(fashionclf("train", "--corrupt", setting, "--out", str(tmp_path / "r")), fragment)


@pytest.mark.parametrize("bad", [("--label-smoothing", "2"), ("--weight-decay", "-1")])
def test_a_bad_value_is_refused_before_the_run_directory_is_written(tmp_path, bad):
    write_csv(tmp_path / "good.csv", synthetic_split(100, seed=0))
    out = tmp_path / "x"
    result = fashionclf("train", "--data", str(tmp_path / "good.csv"), "--epochs", "1", *bad, "--out", str(out))
    assert_one_line_error(result, f"{bad[0]} must be", f"got {float(bad[1])}")
    assert not out.exists()  # so the corrected command finds no run in the way


def test_train_takes_every_declared_setting_as_an_option():
    train = get_command(app).commands["train"]  # type: ignore[attr-defined]
    options = {param.opts[0] for param in train.params} - {"--out", "--resume", "--config", "--help"}
    settings = {option_name(each.name) for each, _ in declared(TrainConfig) if each.name != "model_args"}
    assert options == settings  # model_args alone has no option: recipes, --config and --init set it
    switches = {param.opts[0]: param.secondary_opts for param in train.params if param.secondary_opts}
    assert switches == {option_name(each.name): [f"--no-{option_name(each.name)[2:]}"]
                        for each, _ in declared(TrainConfig) if each.type == "bool"}  # fmt: skip
    assert "--flip" in switches


def test_the_main_job_takes_the_size_of_a_photo_model():
    """`fashionclf run --recipe photos --data DIR` on a slower machine: a smaller square is its first lever."""
    options = {param.opts[0] for param in get_command(app).commands["run"].params}  # type: ignore[attr-defined]
    assert {"--recipe", "--data", "--epochs", "--image-size"} <= options


def test_the_command_line_reads_the_declared_settings_without_importing_torch():
    """Every command builds train's options at its start: a check that fails at once must not wait for torch."""
    code = "import sys, fashionclf.cli; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "False", result.stderr


@pytest.mark.parametrize(
    ("contents", "fragment"),
    [
        ({"train": {"lr": -1}}, "--lr must be a positive number, got -1"),  # a run's config.json
        ({"flip": "yes"}, "--flip must be true or false, got 'yes'"),  # an object of settings alone
        ({"lrr": 0.1}, "unknown setting 'lrr'; known: recipe, model,"),
        ([1, 2], "expected a JSON object of settings, or a run's config.json"),
        ("{not json", "not valid JSON"),
    ],
)
def test_a_bad_config_file_is_one_line_naming_it(tmp_path, contents, fragment):
    file = tmp_path / "settings.json"
    file.write_text(contents if isinstance(contents, str) else json.dumps(contents))
    result = fashionclf("train", "--config", str(file), "--out", str(tmp_path / "r"))
    assert_one_line_error(result, f"--config {file}: {fragment}")
    assert not (tmp_path / "r").exists()


def test_a_runs_config_from_before_a_setting_existed_trains_without_it(tmp_path):
    """A photos run from before --final trained on its train split: its config.json must not get the recipe's
    --final now; an object of settings alone still takes the recipe's."""
    old, settings = tmp_path / "config.json", tmp_path / "settings.json"
    old.write_text(json.dumps({"train": {"recipe": "photos", "model": "efficientnet_lite0", "frozen": True}}))
    settings.write_text(json.dumps({"recipe": "photos"}))
    finals = [_config({}, path).final for path in (old, settings)]
    assert finals == [False, True]


def test_a_missing_config_file_is_one_line(tmp_path):
    assert_one_line_error(fashionclf("train", "--config", str(tmp_path / "nope.json")), "nope.json: cannot read")


def test_config_takes_a_runs_settings_and_the_options_given_override_them(tmp_path):
    run, _ = csv_run(tmp_path)
    again = tmp_path / "again"
    result = fashionclf("train", "--config", str(run.config), "--batch-size", "40", "--out", str(again))
    assert result.returncode == 0, result.stderr
    before, after = (json.loads(path.read_text())["train"] for path in (run.config, again / "config.json"))
    assert after["batch_size"] == 40 and before["batch_size"] == 50
    assert {**after, "batch_size": 50} == before  # the rest as the run recorded it, not the seed recipe's


def test_evaluate_of_replaced_data_is_one_line_and_goes_on_with_a_warning_when_allowed(tmp_path):
    run, csv = csv_run(tmp_path)
    write_csv(csv, synthetic_split(200, seed=7))
    refused = fashionclf("evaluate", str(run.root))
    assert_one_line_error(refused, f"{csv}: not the data {run.root} was trained on", "--allow-changed-data")
    allowed = fashionclf("evaluate", str(run.root), "--allow-changed-data", "--json")
    assert allowed.returncode == 0, allowed.stderr
    [warning] = allowed.stderr.strip().splitlines()
    assert warning.startswith(f"fashionclf: warning: {csv}: not the data") and "recorded as data_changed" in warning
    assert json.loads(allowed.stdout)["data_changed"] is True


def test_a_preprocessing_the_model_cannot_take(tmp_path):
    out = str(tmp_path / "r")
    assert_one_line_error(fashionclf("train", "--preprocessing", "photo", "--out", out), "fashion-mnist, garment")
    assert_one_line_error(fashionclf("train", "--preprocessing", "nope", "--out", out), "--preprocessing nope")
    assert not (tmp_path / "r").exists()


def test_data_dir_without_the_files(tmp_path):
    assert_one_line_error(fashionclf("data", "--data-dir", str(tmp_path)), str(tmp_path))


def test_a_checkpoint_with_code_in_it_is_refused(tmp_path):
    run = RunDir(tmp_path / "run")
    write_json(run.config, {"train": {"data_dir": None}})
    run.best_checkpoint.parent.mkdir(parents=True)

    class Exploit:
        def __reduce__(self):
            return (os.system, ("true",))

    torch.save({"format": CHECKPOINT_FORMAT, "x": Exploit()}, run.best_checkpoint)
    assert_one_line_error(fashionclf("evaluate", str(run.root)), "best.pt", "not a loadable fashionclf checkpoint")


@pytest.mark.real_data
def test_data_reports_where_the_files_came_from():
    result = fashionclf("data", "--json")
    assert result.returncode == 0, result.stderr
    assert '"train_size": 60000' in result.stdout


def test_ctrl_c_stops_training_with_a_resume_hint(tmp_path):
    write_csv(tmp_path / "data.csv", synthetic_split(200, seed=0))
    run = tmp_path / "run"
    # A shell running jobs in the background hands its children SIGINT ignored; a user's terminal does not.
    child = subprocess.Popen(
        [sys.executable, "-m", "fashionclf", "train", "--out", str(run), "--device", "cpu",
         "--data", str(tmp_path / "data.csv"), "--epochs", "10000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    # Interrupt once an epoch has finished: the process is then surely inside the training loop, which 10,000
    # epochs do not leave before the signal comes.
    deadline = time.monotonic() + 120
    while not (run / "checkpoints" / "last.pt").exists():
        assert child.poll() is None and time.monotonic() < deadline, child.stderr.read()
        time.sleep(0.05)
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=60)
    assert child.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert f"fashionclf train --resume {run}" in (run / "train.log").read_text()


def test_a_run_directory_in_use_is_refused_with_its_holder(held_run):
    run, holder = held_run
    result = fashionclf("train", "--out", str(run), "--device", "cpu")
    assert_one_line_error(result, f"{run}: in use by fashionclf train (pid {holder.pid} on ")


def test_an_out_folder_that_is_a_file_is_refused_before_training(tmp_path):
    (tmp_path / "notes").write_text("a file")
    result = fashionclf("train", "--out", str(tmp_path / "notes"), "--device", "cpu")
    assert_one_line_error(result, f"{tmp_path / 'notes'}: cannot write (exists and is not a folder)")


def test_stdout_on_a_full_disk_is_one_line_not_a_traceback():
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, "-m", "fashionclf", "models"], stdout=full, stderr=subprocess.PIPE,
                                text=True, timeout=120)  # fmt: skip
    assert_one_line_error(result, "fashionclf: error: stdout: cannot write (no space left on the device)")


# A full disk found by a write that does not go through fashionclf.files (train.py appends to train.log).
FULL_LOG = """
import errno, os, sys
from pathlib import Path

def full_for_the_log(self, *args, opened=Path.open, **kwargs):
    if self.name == "train.log":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
    return opened(self, *args, **kwargs)

Path.open = full_for_the_log
from fashionclf.cli import main
main()
"""


def test_any_write_on_a_full_disk_is_one_line_naming_the_file(tmp_path):
    write_csv(tmp_path / "data.csv", synthetic_split(200, seed=0))
    run = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-c", FULL_LOG, "train", "--out", str(run), "--data", str(tmp_path / "data.csv"),
         "--device", "cpu", "--epochs", "1"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert_one_line_error(result, f"fashionclf: error: {run / 'train.log'}: cannot write (no space left on the device)")
    assert (run / "config.json").is_file()  # what was written before stays


def test_predict_with_a_corrupted_onnx_model(tmp_path):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not a protobuf at all")
    picture = tmp_path / "a.png"
    picture.write_bytes(b"")
    assert_one_line_error(fashionclf("predict", str(model), str(picture)), str(model), "not a readable ONNX model")


def test_predict_with_a_file_of_another_program(tmp_path):
    model = tmp_path / "model.pt"
    torch.save({"weights": torch.zeros(3)}, model)
    picture = tmp_path / "a.png"
    picture.write_bytes(b"")
    assert_one_line_error(fashionclf("predict", str(model), str(picture)), str(model), "not a fashionclf checkpoint")


@pytest.mark.parametrize(
    ("option", "value", "fragment"),
    [
        ("--port", "99999", "--port: 99999 is not a port number (0 to 65535"),
        ("--max-mb", "-1", "--max-mb: -1 is not a positive finite number"),
        ("--max-mb", "1e-9", "--max-mb: 1e-09 is less than one byte"),
        ("--max-files", "0", "--max-files: 0 is not a positive"),
        ("--max-megapixels", "nan", "--max-megapixels: nan is not a positive finite number"),
        ("--max-megapixels", "inf", "--max-megapixels: inf is not a positive finite number"),
        ("--host", "192.0.2.1", "cannot listen on 192.0.2.1:8000"),  # a documentation address, no machine's own
    ],
)
def test_serve_refuses_a_bad_option_before_loading_the_model(tmp_path, option, value, fragment):
    """The model is no model (an empty folder): the options are checked, and the port bound, before it is loaded."""
    assert_one_line_error(fashionclf("serve", str(tmp_path), option, value), fragment)


def test_serve_refuses_a_port_in_use(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = fashionclf("serve", str(tmp_path), "--port", str(port))
    assert_one_line_error(result, f"127.0.0.1:{port} is already in use")


def test_quantize_refuses_an_unknown_method(tmp_path):
    (tmp_path / "config.json").write_text("{}")  # the method is refused before the run is read
    assert_one_line_error(fashionclf("quantize", str(tmp_path), "--method", "fp16"), "--method: unknown fp16")


@pytest.mark.parametrize(("switches", "cheaper_step"), [((), True), (("--no-bf16", "--no-channels-last"), False)])
def test_the_seed_recipe_runs_on_the_cheaper_step_unless_switched_off(tmp_path, switches, cheaper_step):
    write_csv(tmp_path / "data.csv", synthetic_split(200, seed=0))
    run = tmp_path / "run"
    result = fashionclf(
        "train", "--data", str(tmp_path / "data.csv"), "--epochs", "1", "--device", "cpu", "--out", str(run), *switches
    )
    assert result.returncode == 0, result.stderr
    recorded = json.loads((run / "config.json").read_text())["train"]
    assert recorded["recipe"] == "seed" and recorded["optimizer"] == "adam" and recorded["batch_size"] == 100
    assert recorded["channels_last"] is cheaper_step
    assert recorded["bf16"] is (cheaper_step and bf16_supported(torch.device("cpu")))


def test_progress_is_said_once_though_a_library_configured_the_root_logger(tmp_path):
    write_csv(tmp_path / "data.csv", synthetic_split(200, seed=0))
    code = "import logging; logging.warning('a library'); from fashionclf.cli import main; main()"
    options = ["train", "--data", str(tmp_path / "data.csv"), "--epochs", "1", "--out", str(tmp_path / "run")]
    result = subprocess.run([sys.executable, "-c", code, *options], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("epoch 1/1") == 1 and "INFO:fashionclf" not in result.stdout + result.stderr


def test_the_main_job_announces_its_stages_and_ends_with_a_summary(tmp_path):
    """The whole pipeline on a small CSV: a line per stage with its time, a summary at the end, and none of the
    libraries' noise (torchvision operators skipped by the ONNX exporter, deprecation warnings)."""
    write_csv(tmp_path / "data.csv", synthetic_split(1000, seed=0))
    result = fashionclf("run", "--data", str(tmp_path / "data.csv"), "--epochs", "1", "--out", str(tmp_path / "run"),
                        "--device", "cpu", "--budget", "10", timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "run" / "bench.json").read_text())["timing"]["budget_s"] == 10
    for stage, name in enumerate(("data", "train", "evaluate", "analyze", "quantize", "bench", "report"), start=1):
        assert f"[{stage}/7] {name}: done in " in result.stdout
    summary = result.stdout[result.stdout.index("fashionclf run: summary") :]
    for row in ("test accuracy", "seed report: 90.29%", "int8 model", "runtimes' best int8", "slowest layer", "report"):
        assert row in summary
    words = " ".join(re.sub(r"[│┌┐└┘─┬┴├┤┼]", " ", summary).split())  # the table's cells, as text
    assert re.search(r"int8 on this CPU this CPU has (no )?VNNI \(.*\): .* predict and serve use", words)
    assert "torchvision" not in result.stdout + result.stderr and "Warning" not in result.stdout + result.stderr


def test_the_main_job_takes_a_vote_run_for_a_self_trained_zero_shot_run(monkeypatch):
    from fashionclf import pipeline

    def stop(config, *args, **kwargs):
        raise FashionClfError(f"stopped with the head {config.model_args['head']}, voter {config.vote_run}")

    monkeypatch.setattr(pipeline, "run_all", stop)
    result = CliRunner().invoke(app, ["run", "--recipe", "zero-shot", "--vote-run", "runs/seed", "--data", "photos"])
    assert str(result.exception) == "stopped with the head mlp, voter runs/seed"


def test_sigterm_exits_through_the_cleanups(tmp_path):
    """A killed quantize left its scratch folder behind; under the CLI's handler SIGTERM unwinds as an exit does."""
    child = subprocess.Popen(
        [sys.executable, "-c", SIGTERMED, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )  # fmt: skip
    assert child.stdout is not None and child.stdout.readline() == "ready\n"
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=60) == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []


SIGTERMED = """
import signal, sys, tempfile, time
from pathlib import Path
from fashionclf.cli import exit_on_sigterm
signal.signal(signal.SIGTERM, exit_on_sigterm)
with tempfile.TemporaryDirectory(dir=sys.argv[1]) as scratch:
    (Path(scratch) / "part.onnx").write_bytes(b"half")
    print("ready", flush=True)
    time.sleep(60)
"""
