"""Quantization of a trained run into RUN_DIR/quantized/, every model file with its measured test accuracy.

    fp32.onnx          the fp32 model for ONNX Runtime and OpenVINO (the fp32 checkpoint serves PyTorch eager)
    dynamic.pt         the seed's method: int8 weights of the Linear layers, activations quantized on the fly
                       (torchao), kept for comparison; the convolutions stay fp32
    static.onnx        static int8 of every conv and linear layer but the first and the depthwise ones, weights in
                       7 bits (see FIRST_LAYER_AND_7_BITS, DEPTHWISE_IN_FP32): PT2E with the x86 quantizer,
                       Conv-BatchNorm folded, ReLU and max-pooling fused into the int8 graph, calibrated on training
                       images
    static.pt2         the same int8 model compiled ahead of time by Inductor (oneDNN int8 kernels) for this CPU
    qat.onnx, qat.pt2  quantization-aware fine-tuning, made when static int8 loses more than QAT_THRESHOLD or
                       agrees with fp32 on fewer than AGREEMENT_GOAL of the evaluated images
    ort-static.onnx    ONNX Runtime's own static int8 of fp32.onnx, a peer the benchmark compares against, with the
                       settings its documentation gives for the CPU in use (7-bit weights where it has no VNNI)
    ov-static.xml/bin  OpenVINO's own int8 of fp32.onnx (NNCF post-training quantization), the other peer
    quantization.json  per method: files, sizes, accuracy, top-1 agreement with fp32, on every backend that runs them

The static model is exported twice from one quantized graph, so both backends run identical int8 weights. Every
ONNX file runs on ONNX Runtime and on OpenVINO, and is measured on each. There is no compiled fp32 package: measured,
Inductor's fp32 was slower than ONNX Runtime's on every CPU tried (AMX, AVX-512 and AVX2), so it bought nothing.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import json
import logging
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from rich.table import Table
from torch import nn
from tqdm import tqdm

from fashionclf import datasets
from fashionclf.backends import (
    AGREEMENT_GOAL,
    METADATA_BATCH,
    METADATA_CPU,
    METADATA_KEYS,
    METADATA_METHOD,
    METADATA_MODEL,
    METADATA_SPEC,
    OPENVINO_METADATA,
    backends_of,
    dynamic_batch,
    onnx_program,
    open_runner,
)
from fashionclf.checkpoint import import_torchao, load_model, model_header, recorded_spec, save_checkpoint
from fashionclf.errors import FashionClfError
from fashionclf.files import atomic_write, file_sha256
from fashionclf.models import ModelSpec, model_entry
from fashionclf.networks import example_input, images_per_batch, large_batch, predict_logits
from fashionclf.provenance import change_record, run_dataset, trained_on
from fashionclf.rundir import RunDir, locked, open_run, write_json
from fashionclf.runtime import Cpu, cpu

METHODS = ("dynamic", "static", "qat")
QAT_THRESHOLD = 0.003  # accuracy lost by static int8 beyond which quantization-aware fine-tuning runs
CALIBRATION_IMAGES = 2000  # at most; and at most CALIBRATION_BUDGET input values (a 384-px photo: 151, four views each)
CALIBRATION_BUDGET = 2**26
# Input values in one batch of ONNX Runtime's calibration, whose session keeps every activation of the batch alive (a
# 384-px photo: about 0.8 GB; 18 photos, the usual budget, peaked at 14.8 GB). Min and max over batches are the same
# whatever the batches, so the int8 file is too.
ORT_CALIBRATION_BUDGET = 2**20
QAT_STEPS, QAT_LR, QAT_BATCH = 300, 1e-4, 100
EVALUATION_BATCH = 1000
# Two backends on one int8 file differ where their kernels do (8-bit weights on AVX2: ONNX Runtime's saturating
# kernels agreed with fp32 on 96.4% of the images, OpenVINO on 99.6%); OpenVINO misreads ONNX Runtime's int8 file of
# EfficientNet-Lite0 (12% agreement with fp32 on the photos, against ONNX Runtime's 96.5%).
SAME_FILE_AGREEMENT = 0.9


def quantize_run(
    run_dir: Path, methods: tuple[str, ...] = ("dynamic", "static"), seed: int = 0, allow_changed_data: bool = False
) -> dict:
    """Quantize the run's best model by each method; write the files and quantization.json; return its content.
    The run's data calibrates and measures: refused where it changed since training, unless `allow_changed_data`."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise FashionClfError(f"--method: unknown {', '.join(unknown)}; known: {', '.join(METHODS)}")
    import_torchao()
    run = open_run(run_dir)
    with locked(run.root, "fashionclf quantize"):
        summary = _quantize(run, methods, seed, allow_changed_data)
        write_json(run.quantization, summary)
    return summary


def _quantize(run: RunDir, methods: tuple[str, ...], seed: int, allow_changed_data: bool) -> dict:
    checkpoint_sha256 = file_sha256(run.best_checkpoint)
    model, checkpoint = load_model(run.best_checkpoint)
    spec = recorded_spec(checkpoint)
    data, changes = run_dataset(run, spec.input, "quantize", allow_changed_data)
    evaluated_on, test = data.evaluation_split
    calibration = _calibration_images(data.train, spec, seed)
    run.quantized.mkdir(parents=True, exist_ok=True)

    fp32_onnx = run.quantized_model("fp32", ".onnx")
    export_onnx(model, checkpoint["model"], spec, "fp32", fp32_onnx)
    skipped: dict[str, str] = {}
    files = {"fp32": [run.best_checkpoint, fp32_onnx]}
    if "dynamic" in methods:
        files["dynamic"] = [_quantize_dynamic(model, checkpoint, run.quantized_model("dynamic", ".pt"))]
    ort_reduce_range = not cpu().vnni
    made = {
        "static": lambda: _export_int8(static_int8(model, calibration), checkpoint, "static", run, skipped),
        "ort-static": lambda: [
            _onnxruntime_static(fp32_onnx, calibration, run.quantized_model("ort-static", ".onnx"), ort_reduce_range)
        ],
        "ov-static": lambda: [_openvino_static(fp32_onnx, calibration, run.quantized_model("ov-static", ".xml"))],
    }
    wanted = ["static"] if "static" in methods or "qat" in methods else []
    for method in [*wanted, "ort-static", "ov-static"]:
        if (paths := _attempted(method, made[method], skipped)) is not None:
            files[method] = paths

    reference = predict_logits(open_runner(run.best_checkpoint), test.images, EVALUATION_BATCH).argmax(1)
    measured = tqdm(files.items(), desc="measuring every model file", unit="method", disable=None, leave=False)
    results = {method: _accuracy_of(paths, run, test, reference, skipped) for method, paths in measured}
    if "qat" not in methods and model_entry(checkpoint["model"]).pretrained:
        skipped["qat"] = ("not tried unasked for a pretrained model: it would retrain the ImageNet backbone on the "
                          "calibration photos (--method qat asks for it)")  # fmt: skip
    elif "qat" in methods or ("static" in results and not _close_to_fp32(results["static"], results["fp32"])):

        def qat() -> list[Path]:
            fine_tuned = quantization_aware(model, data.train, calibration, seed)
            return _export_int8(fine_tuned, checkpoint, "qat", run, skipped)

        qat_files = _attempted("qat", qat, skipped)
        if qat_files is not None:
            results["qat"] = _accuracy_of(qat_files, run, test, reference, skipped)
    return {
        "model": checkpoint["model"],
        "checkpoint": str(run.best_checkpoint.relative_to(run.root)),
        "checkpoint_sha256": checkpoint_sha256,
        "calibration_images": len(calibration),
        "evaluated_on": evaluated_on,
        "trained_on": trained_on(run, data, evaluated_on, own_data=True),  # --final: the agreement still compares
        "test_images": len(test),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu": cpu().as_dict(),
        "settings": _settings(model, ort_reduce_range),
        "methods": results,
        "skipped": skipped,
        "best_int8": best_int8(results),
        "int8_outlook": int8_outlook(best_int8(results), cpu()),
        **change_record(changes),
    }


def _settings(model: nn.Module, ort_reduce_range: bool) -> dict:
    """How the int8 files were made, and why, for quantization.json."""
    ort = (
        "7-bit weights (reduce_range), as ONNX Runtime's documentation advises for CPUs without VNNI"
        if ort_reduce_range
        else "8-bit weights: this CPU has VNNI, so ONNX Runtime's kernels do not saturate"
    )
    depthwise = depthwise_convolutions(model)
    return {
        "weights": f"int8 per channel, symmetric, in [{WEIGHT_RANGE[0]}, {WEIGHT_RANGE[1]}]",
        "activations": "uint8 per tensor, affine, histogram-calibrated",
        "kept_in_fp32": kept_in_fp32(model),
        "why": f"{FIRST_LAYER_AND_7_BITS}; {DEPTHWISE_IN_FP32}" if depthwise else FIRST_LAYER_AND_7_BITS,
        "ort_static": ort,
    }


def _close_to_fp32(int8: dict, fp32: dict) -> bool:
    """An int8 method as accurate as inference needs: within QAT_THRESHOLD of fp32's accuracy and agreeing with it
    on at least AGREEMENT_GOAL of the evaluated images, on every backend."""
    return fp32["accuracy"] - int8["accuracy"] <= QAT_THRESHOLD and int8["agreement"] >= AGREEMENT_GOAL


def _attempted(method: str, make: Callable[[], list[Path]], skipped: dict[str, str]) -> list[Path] | None:
    """A method's files, or None with the reason under `skipped`: a model one quantizer cannot handle keeps its fp32
    files and every other method's."""
    try:
        return make()
    except Exception as exc:  # noqa: BLE001 - the quantizers' failures share no type
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        skipped[method] = f"{type(exc).__name__}: {reason}".rstrip(": ")
        return None


def _calibration_images(train: datasets.Split, spec: ModelSpec, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    count = min(CALIBRATION_IMAGES, CALIBRATION_BUDGET // math.prod(spec.input_size))
    chosen = torch.randperm(len(train), generator=generator)[:count]
    return datasets.to_float(train.images[chosen])


def _metadata(name: str, spec: ModelSpec, method: str) -> dict[str, str]:
    """What every exported file says of itself: the model, its classes and input, and how it was made."""
    return {METADATA_MODEL: name, METADATA_SPEC: json.dumps(spec.as_dict()), METADATA_METHOD: method}


def export_onnx(model: nn.Module, name: str, spec: ModelSpec, method: str, target: Path) -> Path:
    """ONNX with a dynamic batch axis and the model's name, spec and method in its metadata, in one self-contained
    file."""
    proto = onnx_program(model, example_input(spec, 2))
    for key, value in _metadata(name, spec, method).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    atomic_write(target, lambda tmp: tmp.write_bytes(proto.SerializeToString()))
    return target


def _quantize_dynamic(model: nn.Module, checkpoint: dict, target: Path) -> Path:
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    quantized = copy.deepcopy(model)
    quantize_(quantized, Int8DynamicActivationInt8WeightConfig(), filter_fn=lambda m, _: isinstance(m, nn.Linear))
    header = model_header(checkpoint["model"], checkpoint["model_args"], recorded_spec(checkpoint))
    save_checkpoint(target, {**header, "state_dict": quantized.state_dict(), "quantization": "dynamic"})
    return target


# Why the first convolution stays fp32 and the other weights keep to 7 bits. ONNX Runtime's int8 kernels on x86 CPUs
# without VNNI add pairs of u8 x s8 products in 16 bits, which saturate with 8-bit weights (the seed model's
# static.onnx agreed with fp32 on 96.4% of the test images there, against 99.6% on OpenVINO and Inductor); with 7
# bits no pair can (2 x 255 x 64 < 32768), so every backend computes the same answers on every x86 CPU. The first
# convolution sees the picture itself, and its weights in 7 (or 8) bits were the int8 graph's largest error: kept in
# fp32 it raises agreement with fp32 to 99.8% (99.5% without), at no measured cost on Inductor and OpenVINO.
FIRST_LAYER_AND_7_BITS = (
    "the first convolution sees the picture itself and loses most in int8 (99.5% agreement with fp32, 99.8% with it "
    "in fp32); 7-bit weights keep ONNX Runtime's kernels on CPUs without VNNI from saturating (96.4% agreement with "
    "8-bit weights there), so every backend gives the same answers on every x86 CPU"
)
WEIGHT_RANGE = (-64, 63)
# Why depthwise convolutions stay fp32. Each output channel of one is a single 3x3 or 5x5 filter, 9 or 25 weights
# under their own scale, each output a sum of that few products, so no averaging hides a weight's rounding: in 7 bits
# they were the largest error of EfficientNet-Lite0's int8 graph. Measured on the photo model (simulated int8 against
# fp32 on validation photos): its logits moved 4.4 times less from fp32's with them in fp32 (mean squared
# difference 0.026 against 0.114), 2.9 times less with their weights in 8 bits (0.039). Models without any (the
# Fashion-MNIST networks) are unchanged. docs/RESULTS.md has the measured accuracy on every backend.
DEPTHWISE_IN_FP32 = (
    "depthwise convolutions (one 3x3 or 5x5 filter a channel) lost most in 7 bits: in fp32, EfficientNet-Lite0's "
    "logits moved 4.4 times less from fp32's (2.9 times less with them in 8 bits)"
)


def first_layer(model: nn.Module) -> str:
    """The name of the model's first convolution, the one that sees the picture (registered models define it
    first)."""
    return next(name for name, module in model.named_modules() if isinstance(module, nn.Conv2d))


def depthwise_convolutions(model: nn.Module) -> list[str]:
    """The names of the model's depthwise convolutions (one filter per input channel), in order."""
    return [name for name, module in model.named_modules()
            if isinstance(module, nn.Conv2d) and module.groups > 1 and module.groups == module.in_channels]  # fmt: skip


def kept_in_fp32(model: nn.Module) -> list[str]:
    """The layers that stay fp32 in the int8 graph: the first convolution (FIRST_LAYER_AND_7_BITS) and every
    depthwise convolution (DEPTHWISE_IN_FP32)."""
    return [first_layer(model), *depthwise_convolutions(model)]


def _x86_quantizer(model: nn.Module, is_qat: bool = False):
    """The x86 quantizer at its defaults but for weights in WEIGHT_RANGE, for every layer but those kept_in_fp32."""
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as x86

    config = x86.get_default_x86_inductor_quantization_config(is_qat=is_qat)
    low, high = WEIGHT_RANGE
    weight = dataclasses.replace(config.weight, quant_min=low, quant_max=high)
    quantizer = x86.X86InductorQuantizer().set_global(dataclasses.replace(config, weight=weight))
    for name in kept_in_fp32(model):
        quantizer.set_module_name_qconfig(name, None)
    return quantizer


def static_int8(model: nn.Module, calibration: torch.Tensor) -> nn.Module:
    """PT2E post-training quantization: export, insert observers, run the calibration images, convert."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    quantizer = _x86_quantizer(model)
    example = calibration[:2]
    with torch.no_grad():
        exported = torch.export.export(model.eval(), (example,), dynamic_shapes=dynamic_batch()).module()
        prepared = prepare_pt2e(exported, quantizer)
        for batch in calibration.split(images_per_batch(tuple(calibration.shape[1:]), 500)):
            prepared(batch)
        return _converted(prepared)


def quantization_aware(model: nn.Module, train: datasets.Split, calibration: torch.Tensor, seed: int) -> nn.Module:
    """Fine-tune with fake quantization in the graph (PT2E QAT) at a low learning rate, then convert to int8.

    BatchNorm is folded into the convolutions first, its statistics frozen, as is usual for a short fine-tune at a
    low rate: torchao's QAT cannot fold a Conv-BatchNorm pair whose convolution stays fp32 (the first layer)."""
    from torch.fx.experimental.optimization import fuse
    from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    quantizer = _x86_quantizer(model, is_qat=True)
    example = calibration[:2]
    folded = fuse(copy.deepcopy(model).eval()).train()
    exported = torch.export.export(folded, (example,), dynamic_shapes=dynamic_batch())
    prepared = prepare_qat_pt2e(exported.module(), quantizer)
    move_exported_model_to_train(prepared)
    optimizer = torch.optim.Adam(prepared.parameters(), lr=QAT_LR)
    generator = torch.Generator().manual_seed(seed)
    steps = 0
    while steps < QAT_STEPS:
        for images, labels in datasets.batches(train, QAT_BATCH, shuffle=True, generator=generator):
            loss = nn.functional.cross_entropy(prepared(datasets.to_float(images)), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps += 1
            if steps == QAT_STEPS:
                break
    move_exported_model_to_eval(prepared)
    with torch.no_grad():
        return _converted(prepared)


def _converted(prepared: torch.fx.GraphModule) -> nn.Module:
    """The int8 graph, flagged for inference. Exported modules keep `training` True and refuse .eval() even when
    their ops are in inference form, as they are here; ONNX export would warn that the model is training."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    converted = convert_pt2e(prepared)
    converted.training = False
    return converted


def _export_int8(quantized: nn.Module, checkpoint: dict, method: str, run: RunDir, skipped: dict) -> list[Path]:
    target = run.quantized_model(method, ".onnx")
    onnx_path = export_onnx(quantized, checkpoint["model"], recorded_spec(checkpoint), method, target)
    return [*_aot_package(quantized, checkpoint, method, run, skipped), onnx_path]


def _aot_package(model: nn.Module, checkpoint: dict, method: str, run: RunDir, skipped: dict) -> list[Path]:
    """The compiled package, or none where Inductor cannot build here (no C++ compiler, say): the other backends
    still serve, and quantization.json says why this one is missing."""
    target = run.quantized_model(method, ".pt2")
    try:
        return [compile_package(model, checkpoint["model"], recorded_spec(checkpoint), method, target)]
    except Exception as exc:  # noqa: BLE001 - a failed C++ build surfaces as any of Inductor's many exceptions
        skipped[target.name] = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        return []


def compile_package(model: nn.Module, name: str, spec: ModelSpec, method: str, target: Path) -> Path:
    """Compile ahead of time with Inductor (weights frozen and prepacked for oneDNN) into one .pt2 package.

    The batch size is fixed at the spec's large batch: in PyTorch 2.13, freezing with a dynamic batch axis compiles the
    int8 graph into wrong results (about 10% accuracy), so the runner splits and pads batches to this size."""
    metadata = {
        **_metadata(name, spec, method),
        METADATA_CPU: torch.backends.cpu.get_cpu_capability(),
        METADATA_BATCH: str(large_batch(spec)),
    }
    with torch.no_grad():
        program = torch.export.export(model, (example_input(spec, large_batch(spec)),))
        with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
            built = torch._inductor.aoti_compile_and_package(
                program,
                package_path=os.path.join(scratch, target.name),
                inductor_configs={"freezing": True, "aot_inductor.metadata": metadata},
            )
            os.replace(built, target)
    return target


def _onnxruntime_static(fp32_onnx: Path, calibration: torch.Tensor, target: Path, reduce_range: bool) -> Path:
    """ONNX Runtime's recommended static int8: pre-processing, QDQ format, per-channel weights (in 7 bits with
    `reduce_range`)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Calibration(CalibrationDataReader):
        def __init__(self) -> None:
            shape = tuple(calibration.shape[1:])
            self.batches = iter(calibration.split(images_per_batch(shape, 500, ORT_CALIBRATION_BUDGET)))

        def get_next(self) -> dict | None:
            batch = next(self.batches, None)
            return None if batch is None else {"images": batch.numpy()}

    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        prepared, quantized = Path(scratch) / "prepared.onnx", Path(scratch) / target.name
        # ONNX's own shape inference suffices for these fixed-size networks; ONNX Runtime's symbolic one fails on the
        # Concat of the photo models' graphs (TypeError: 'NoneType' object is not iterable).
        quant_pre_process(str(fp32_onnx), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(quantized), Calibration(), quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=reduce_range)  # fmt: skip
        proto = onnx.load(str(quantized))
        for entry in proto.metadata_props:
            if entry.key == METADATA_METHOD:
                entry.value = "ort-static"
        onnx.save_model(proto, str(quantized))
        os.replace(quantized, target)
    return target


def _openvino_static(fp32_onnx: Path, calibration: torch.Tensor, target: Path) -> Path:
    """OpenVINO's own post-training int8 of the fp32 ONNX model (NNCF, its default preset), calibrated on the same
    images, saved as OpenVINO's model (.xml) and weights (.bin) with fashionclf's metadata in its runtime
    information."""
    import nncf
    import onnx
    import openvino as ov

    nncf.set_log_level(logging.ERROR)
    calibration_set = nncf.Dataset([image[None].numpy() for image in calibration])
    # NNCF draws a progress bar of its own on stdout, even in logs; fashionclf's stages have theirs.
    with contextlib.redirect_stdout(io.StringIO()):
        quantized = nncf.quantize(ov.Core().read_model(str(fp32_onnx)), calibration_set, subset_size=len(calibration))
    metadata = {entry.key: entry.value for entry in onnx.load(str(fp32_onnx)).metadata_props}
    for key in METADATA_KEYS:
        quantized.set_rt_info(metadata[key] if key != METADATA_METHOD else "ov-static", [OPENVINO_METADATA, key])
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        ov.save_model(quantized, Path(scratch) / target.name)
        os.replace(Path(scratch) / target.with_suffix(".bin").name, target.with_suffix(".bin"))
        os.replace(Path(scratch) / target.name, target)  # the model last: it names its weights, which are in place
    return target


def _accuracy_of(
    paths: list[Path], run: RunDir, test: datasets.Split, reference: torch.Tensor, skipped: dict[str, str]
) -> dict:
    """Test accuracy and top-1 agreement with fp32 (`reference`: best.pt's predictions on eager, which are not
    computed again for best.pt's own row) of every file of a method, on every backend that runs it (a backend that
    cannot, other than the file's own, is listed in `skipped` with its reason); the method's own figures are the
    worst of its files'."""
    files: dict[str, dict[str, Any]] = {}
    own: dict[Path, torch.Tensor] = {}  # each file's predictions on its own backend
    for path, backend in [(file, backend) for file in paths for backend in backends_of(file)]:
        try:
            runner = open_runner(path, backend)
        except FashionClfError as exc:
            if backend == backends_of(path)[0]:
                raise
            skipped[f"{path.name} on {backend}"] = str(exc).removeprefix(f"{path}: ")
            continue
        is_reference = (path, backend) == (run.best_checkpoint, "eager")
        predicted = reference if is_reference else predict_logits(runner, test.images, EVALUATION_BATCH).argmax(1)
        if (misread := _misread(path, backend, predicted, own.setdefault(path, predicted))) is not None:
            skipped[f"{path.name} on {backend}"] = misread
            continue
        files[backend] = {
            "path": os.path.relpath(path, run.root),
            "bytes": model_bytes(path),
            "accuracy": (predicted == test.labels).float().mean().item(),
            "agreement": (predicted == reference).float().mean().item(),
        }
    worst = {key: min(entry[key] for entry in files.values()) for key in ("accuracy", "agreement")}
    return {**worst, "files": files}


def _misread(path: Path, backend: str, predicted: torch.Tensor, on_its_own: torch.Tensor) -> str | None:
    """Why a second backend's answers on a file are not the file's (None where they are): a backend that computes
    the same graph differently still agrees with its own backend on most images; one that misreads it does not."""
    same = (predicted == on_its_own).float().mean().item()
    if same >= SAME_FILE_AGREEMENT:
        return None
    return (f"its answers on {backend} are not the file's: the same as on {backends_of(path)[0]} for {same:.1%} of "
            f"the evaluated images (under {SAME_FILE_AGREEMENT:.0%}): {backend} misreads it")  # fmt: skip


def model_bytes(path: Path) -> int:
    """A model file's size, with its weights file for OpenVINO's models (.xml beside .bin)."""
    weights = path.with_suffix(".bin") if path.suffix == ".xml" else None
    return path.stat().st_size + (weights.stat().st_size if weights else 0)


def best_int8(results: dict) -> str | None:
    """The int8 method that inference uses: of our own, those agreeing with fp32 enough, the most accurate."""
    usable = [m for m in ("static", "qat") if m in results and results[m]["agreement"] >= AGREEMENT_GOAL]
    return max(usable, key=lambda m: results[m]["accuracy"], default=None)


def quantization_table(result: dict) -> Table:
    table = Table(title=f"{result['model']}: test accuracy of every model file ({result['test_images']:,} images)")
    for column in ("method", "backend", "file", "MB", "accuracy", "agreement with fp32"):
        table.add_column(column, justify="right" if column in ("MB", "accuracy", "agreement with fp32") else "left")
    for method, entry in result["methods"].items():
        for backend, file in entry["files"].items():
            table.add_row(method, backend, file["path"], f"{file['bytes'] / 1e6:.2f}", f"{file['accuracy']:.2%}",
                          f"{file['agreement']:.2%}")  # fmt: skip
    table.caption = result["int8_outlook"]
    return table


def int8_outlook(method: str | None, machine: Cpu) -> str:
    """One line on the int8 model and what to expect of its speed on this CPU, before `bench` measures it."""
    if method is None:
        return (
            f"no int8 model agrees with fp32 on {AGREEMENT_GOAL:.1%} of the evaluated images: predict and serve use "
            f"fp32; this CPU {machine.int8_support}"
        )
    expect = "int8 should outrun fp32 here" if machine.vnni else "int8 may run no faster than fp32 here"
    return (
        f"int8 model: {method}; this CPU {machine.int8_support}: {expect}. predict and serve time fp32 and int8 and "
        "use the faster; fashionclf bench measures both"
    )
