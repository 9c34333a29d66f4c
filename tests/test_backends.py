"""Opening model files on each backend, refusing files that are not ours, and choosing the fastest backend."""

from pathlib import Path

import onnx
import pytest
import torch
from torch import nn

from fashionclf import backends
from fashionclf.backends import METADATA_MODEL, Runner, dispatch, fastest, open_runner
from fashionclf.errors import FashionClfError
from fashionclf.models import ModelSpec
from fashionclf.quantize import export_onnx


def test_a_missing_file(tmp_path):
    with pytest.raises(FashionClfError, match="model file does not exist"):
        open_runner(tmp_path / "model.onnx")


@pytest.mark.parametrize("name", ["model.onnx", "model.pt2", "model.pt"])
def test_a_corrupted_file_is_one_error_naming_it(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"\x08\x07garbage" * 100)
    with pytest.raises(FashionClfError, match=f"{name}: not a"):
        open_runner(path)


def test_an_onnx_model_of_another_program_is_refused(tmp_path):
    path = tmp_path / "other.onnx"
    program = torch.onnx.export(nn.Linear(784, 10), (torch.rand(2, 784),), dynamo=True, verbose=False)
    onnx.save_model(program.model_proto, path)
    with pytest.raises(FashionClfError, match=f"not a fashionclf model \\(no '{METADATA_MODEL}'"):
        open_runner(path)


def test_an_onnx_model_of_another_architecture_is_refused(tmp_path):
    other = nn.Sequential(nn.Flatten(), nn.Linear(784, 5))  # five classes, under our model's name
    path = export_onnx(other, "fashion_cnn", ModelSpec(), "fp32", tmp_path / "five.onnx")
    with pytest.raises(FashionClfError, match=r"five.onnx: gives outputs of shape \(2, 5\)"):
        open_runner(path)


def test_a_package_compiled_for_another_cpu_is_refused(quantized_run, monkeypatch):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "NO AVX")
    with pytest.raises(FashionClfError, match="compiled for a .* CPU, this one is NO AVX"):
        open_runner(quantized_run.quantized / "static.pt2")


def _runner(name: str) -> Runner:
    return Runner(name, Path(f"{name}.model"), "fashion_cnn", "fp32", lambda images: torch.zeros(len(images), 10))


def test_the_fastest_runner_is_chosen_per_batch_regime(monkeypatch):
    """The choice given the timings, which are stood in for: real ones are a benchmark's business."""
    seconds = {("onnxruntime", 1): 1e-4, ("onnxruntime", 256): 2e-2, ("inductor", 1): 5e-3, ("inductor", 256): 1e-2}
    monkeypatch.setattr(
        backends, "latencies", lambda runner, images, calls: [seconds[runner.backend, len(images)]] * calls
    )
    quick_alone, quick_in_bulk = _runner("onnxruntime"), _runner("inductor")
    runners = [quick_in_bulk, quick_alone]
    assert fastest(runners, 1, calls=5) is quick_alone
    assert fastest(runners, 256, calls=3) is quick_in_bulk


def test_a_run_directory_dispatches_between_its_files(quantized_run, real_data):
    static = quantized_run.quantized
    files = [
        (static / "static.pt2", "inductor"),
        (static / "static.onnx", "onnxruntime"),
        (static / "static.onnx", "openvino"),
    ]
    chosen = dispatch(files)
    assert {chosen.small.backend, chosen.large.backend} <= {"inductor", "onnxruntime", "openvino"}
    images = real_data.test.images[:40].float() / 255
    assert chosen(images[:1]).shape == (1, 10) and chosen(images).shape == (40, 10)


@pytest.fixture
def own_backends(monkeypatch):
    """Backends registered in a test are gone after it."""
    monkeypatch.setattr(backends, "_BACKENDS", dict(backends._BACKENDS))


def test_a_registered_backend_opens_its_files_by_name_and_is_listed_for_them(own_backends, tmp_path):
    @backends.register_backend("zeros", suffixes=(".zeros", ".onnx"))
    def open_zeros(path: Path) -> Runner:
        return Runner("zeros", path, "fashion_cnn", "fp32", lambda images: torch.zeros(len(images), 10))

    path = tmp_path / "model.zeros"
    path.write_bytes(b"")
    assert backends.backends_of(path) == ("zeros",)
    assert backends.backends_of(tmp_path / "model.onnx") == ("onnxruntime", "openvino", "zeros")
    runner = open_runner(path)
    assert (runner.backend, runner.model) == ("zeros", "fashion_cnn")
    assert open_runner(path, "zeros")(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    with pytest.raises(FashionClfError, match="model.zeros: onnxruntime does not run .zeros files"):
        open_runner(path, "onnxruntime")
    with pytest.raises(ValueError, match="'zeros' is registered twice"):
        backends.register_backend("zeros", suffixes=(".z",))(open_zeros)


def test_a_file_of_a_suffix_no_backend_names_is_opened_as_a_checkpoint(tmp_path):
    assert backends.backends_of(tmp_path / "model.pt") == backends.backends_of(tmp_path / "weights.bin") == ("eager",)
    (tmp_path / "weights.bin").write_bytes(b"\x08\x07garbage" * 100)
    with pytest.raises(FashionClfError, match="weights.bin: not a"):
        open_runner(tmp_path / "weights.bin")
