"""Quantization of a real (short) run: every model file's accuracy, agreement and size, and the int8 graph."""

import warnings
from dataclasses import replace

import onnx
import pytest
import torch
from onnx import numpy_helper

from fashionclf import quantize
from fashionclf.backends import AGREEMENT_GOAL, open_runner
from fashionclf.checkpoint import load_model
from fashionclf.datasets import Split, to_float
from fashionclf.errors import FashionClfError
from fashionclf.models import ModelSpec
from fashionclf.networks import predict_logits
from fashionclf.pretrained import EfficientNetLite
from fashionclf.quantize import (
    WEIGHT_RANGE,
    _onnxruntime_static,
    export_onnx,
    kept_in_fp32,
    model_bytes,
    quantization_aware,
    quantize_run,
    static_int8,
)
from fashionclf.rundir import RunDir, read_json
from fashionclf.runtime import cpu

from synthetic import csv_run, synthetic_split, write_csv


def test_static_int8_keeps_accuracy_at_a_quarter_of_the_size(quantized_run):
    """On every backend, on every x86 CPU: with 8-bit weights, ONNX Runtime's kernels on CPUs without VNNI
    saturated and agreed with fp32 on 96.4% of the test images."""
    result = read_json(quantized_run.quantization)
    fp32, static = result["methods"]["fp32"], result["methods"]["static"]
    assert set(static["files"]) == {"inductor", "onnxruntime", "openvino"}
    assert static["agreement"] >= AGREEMENT_GOAL  # the worst of its files
    assert fp32["accuracy"] - static["accuracy"] <= 0.003
    assert static["files"]["onnxruntime"]["bytes"] <= 0.30 * fp32["files"]["onnxruntime"]["bytes"]
    assert result["best_int8"] == "static" and "qat" not in result["methods"]  # no need of QAT
    assert result["methods"][result["best_int8"]]["agreement"] >= AGREEMENT_GOAL


def test_the_first_layer_stays_fp32_the_rest_in_7_bits_and_the_peer_follows_its_advice(quantized_run):
    proto = onnx.load(str(quantized_run.quantized / "static.onnx"))
    int8 = [t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) > 1]
    assert sorted(tuple(t.dims) for t in int8) == [(10, 120), (64, 32, 3, 3), (120, 600), (600, 2304)]
    values = [numpy_helper.to_array(t) for t in int8]
    assert min(v.min() for v in values) >= WEIGHT_RANGE[0] and max(v.max() for v in values) <= WEIGHT_RANGE[1]
    settings = read_json(quantized_run.quantization)["settings"]
    assert settings["kept_in_fp32"] == ["layer1.0"]
    assert ("reduce_range" in settings["ort_static"]) is (not cpu().vnni)
    peer = onnx.load(str(quantized_run.quantized / "ort-static.onnx"))
    peer_weights = [numpy_helper.to_array(t) for t in peer.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert (max(abs(int(w.min())) for w in peer_weights if w.ndim > 1) <= 64) is (not cpu().vnni)


def test_every_file_was_measured_on_the_whole_test_set(quantized_run, real_data):
    result = read_json(quantized_run.quantization)
    assert result["test_images"] == len(real_data.test)
    assert set(result["methods"]) == {"fp32", "dynamic", "static", "ort-static", "ov-static"}
    assert set(result["methods"]["static"]["files"]) == {"inductor", "onnxruntime", "openvino"}
    for entry in result["methods"].values():
        for file in entry["files"].values():
            assert model_bytes(quantized_run.root / file["path"]) == file["bytes"]
            assert 0.5 < file["accuracy"] < 1


def test_both_backends_run_the_same_int8_weights(quantized_run, real_data):
    images = real_data.test.images[:700]  # not a multiple of the compiled batch: the last chunk is padded
    compiled = predict_logits(open_runner(quantized_run.quantized / "static.pt2"), images, 700)
    exported = predict_logits(open_runner(quantized_run.quantized / "static.onnx"), images, 700)
    assert compiled.shape == (700, 10)
    assert (compiled.argmax(1) == exported.argmax(1)).float().mean() >= 0.998
    assert torch.allclose(compiled, exported, atol=0.2)


def test_onnx_runtimes_int8_file_is_the_same_whatever_its_calibration_batches(quantized_run, real_data, tmp_path,
                                                                              monkeypatch):  # fmt: skip
    """Its calibration is batched small to bound memory: min and max over batches are the whole set's."""
    calibration = to_float(real_data.train.images[:64])
    one_batch = _onnxruntime_static(quantized_run.quantized / "fp32.onnx", calibration, tmp_path / "a.onnx", True)
    monkeypatch.setattr(quantize, "ORT_CALIBRATION_BUDGET", 3 * 28 * 28)  # batches of 3 images
    batched = _onnxruntime_static(quantized_run.quantized / "fp32.onnx", calibration, tmp_path / "b.onnx", True)
    weights = [{t.name: numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}
               for path in (one_batch, batched)]  # fmt: skip
    assert weights[0].keys() == weights[1].keys() and len(weights[0]) > 10
    assert all((weights[0][name] == weights[1][name]).all() for name in weights[0])


def test_dynamic_quantization_converts_only_the_linear_layers(quantized_run):
    model, checkpoint = load_model(quantized_run.quantized / "dynamic.pt")
    assert checkpoint["quantization"] == "dynamic"
    assert type(model.layer1[0].weight) is torch.nn.Parameter and model.layer1[0].weight.dtype == torch.float32
    assert type(model.fc1.weight) is not torch.nn.Parameter  # an int8 tensor subclass


@pytest.fixture(scope="module")
def static_graph(trained_run, real_data):
    model, _ = load_model(trained_run.best_checkpoint)
    return static_int8(model, to_float(real_data.train.images[:200]))


def test_the_int8_graph_folds_batchnorm_and_quantizes_every_conv_and_linear_but_the_first(static_graph):
    targets = [str(node.target) for node in static_graph.graph.nodes if node.op == "call_function"]
    assert not any("batch_norm" in t for t in targets)
    weighted = [t for t in targets if t in ("aten.conv2d.default", "aten.linear.default")]
    assert len(weighted) == 5
    assert sum("dequantize_per_channel" in t for t in targets) == 4  # int8 weights, per channel, but the first's


def test_a_model_with_depthwise_convolutions_keeps_them_and_its_first_layer_in_fp32():
    lite0 = EfficientNetLite("lite0")
    kept = kept_in_fp32(lite0)
    assert kept[0] == "_conv_stem.1" and len(kept) == 1 + 16  # the stem, and Lite0's 16 blocks' depthwise convs
    assert all(lite0.get_submodule(name).groups == lite0.get_submodule(name).in_channels > 1 for name in kept[1:])
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3, groups=8), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 4, 1), torch.nn.Flatten(), torch.nn.LazyLinear(2),
    )  # fmt: skip
    model(torch.rand(2, 3, 12, 12))
    graph = static_int8(model.eval(), torch.rand(8, 3, 12, 12))
    int8_weights = [node for node in graph.graph.nodes if "dequantize_per_channel" in str(node.target)]
    assert kept_in_fp32(model) == ["0", "2"]
    assert len(int8_weights) == 2  # the pointwise convolution's and the linear layer's


def test_the_int8_graph_exports_to_onnx_as_an_inference_model(static_graph, tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export_onnx(static_graph, "fashion_cnn", ModelSpec(), "static", tmp_path / "static.onnx")
    assert not [w for w in caught if "training mode" in str(w.message)]


def test_quantization_aware_fine_tuning_converts_to_a_working_int8_model(trained_run, real_data, monkeypatch):
    from fashionclf import quantize

    monkeypatch.setattr(quantize, "QAT_STEPS", 10)
    model, _ = load_model(trained_run.best_checkpoint)
    calibration = to_float(real_data.train.images[:200])
    qat = quantization_aware(model, real_data.train, calibration, seed=0)
    images, labels = to_float(real_data.test.images[:1000]), real_data.test.labels[:1000]
    with torch.no_grad():
        int8, fp32 = ((m(images).argmax(1) == labels).float().mean().item() for m in (qat, model))
    assert int8 >= fp32 - 0.03
    assert any("quantize_per_tensor" in str(node.target) for node in qat.graph.nodes)
    # As static int8: every weight but the first convolution's in int8, in 7 bits.
    weights = [node for node in qat.graph.nodes if "dequantize_per_channel" in str(node.target)]
    assert len(weights) == 4
    assert all(node.args[4:6] == WEIGHT_RANGE for node in weights)


def test_an_unknown_method_is_refused(trained_run):
    with pytest.raises(FashionClfError, match="--method: unknown fp64"):
        quantize_run(trained_run.root, ("fp64",))


def test_a_package_that_cannot_be_compiled_here_is_skipped_with_its_reason(tmp_path, monkeypatch):
    from fashionclf import quantize

    def no_compiler(*args, **kwargs):
        raise RuntimeError("Compilation failed: g++ not found\nmore detail")

    monkeypatch.setattr(quantize, "compile_package", no_compiler)
    skipped = {}
    run = RunDir(tmp_path)
    assert quantize._aot_package(torch.nn.Identity(), {"model": "fashion_cnn"}, "static", run, skipped) == []
    assert skipped == {"static.pt2": "Compilation failed: g++ not found"}


def test_a_backend_that_misreads_a_file_is_skipped_with_what_was_measured(quantized_run, real_data, monkeypatch):
    from fashionclf import quantize

    def misreading(path, backend=None):
        runner = open_runner(path, backend)
        if backend != "openvino":
            return runner
        return replace(runner, run=lambda images: runner.run(images).roll(1, dims=1))  # each answer the next class

    monkeypatch.setattr(quantize, "open_runner", misreading)
    test = Split(real_data.test.images[:500], real_data.test.labels[:500])
    reference = predict_logits(open_runner(quantized_run.best_checkpoint), test.images, 500).argmax(1)
    skipped = {}
    result = quantize._accuracy_of([quantized_run.quantized / "static.onnx"], quantized_run, test, reference, skipped)
    assert set(result["files"]) == {"onnxruntime"} and result["agreement"] > 0.9
    assert skipped["static.onnx on openvino"].startswith("its answers on openvino are not the file's: the same as on "
                                                         "onnxruntime for 0.0% of the evaluated images")  # fmt: skip


def test_a_model_the_int8_quantizer_cannot_handle_keeps_fp32_and_the_other_methods(tmp_path, monkeypatch):
    from fashionclf.inference import load_classifier

    def unsupported(*args, **kwargs):
        raise ValueError("Input partition has more than one output node")

    monkeypatch.setattr(quantize, "static_int8", unsupported)
    run = csv_run(tmp_path)[0].root  # a small run: what is checked is what happens to the methods, not accuracy
    summary = quantize_run(run, ("static",))
    assert summary["skipped"]["static"] == "ValueError: Input partition has more than one output node"
    assert "static" not in summary["methods"] and summary["best_int8"] is None
    assert {"fp32", "ort-static", "ov-static"} <= summary["methods"].keys()
    classifier = load_classifier(run)  # no int8 model to serve: fp32
    assert "static" not in classifier.description and "fp32" in classifier.description


def test_data_replaced_since_training_is_refused_before_anything_is_written(tmp_path):
    run, csv = csv_run(tmp_path)
    write_csv(csv, synthetic_split(200, seed=7))
    with pytest.raises(FashionClfError, match=r"\(data.csv has SHA-256 .*; pass --allow-changed-data to quantize it"):
        quantize_run(run.root)
    assert not run.quantized.exists()
