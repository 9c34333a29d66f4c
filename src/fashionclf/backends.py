"""Backends that run a model file this project wrote, each a function float32 (N, C, H, W) -> logits (N, classes):

- eager: PyTorch, from a checkpoint (.pt): the fp32 weights, or the dynamic int8 of the Linear layers;
- inductor: an ahead-of-time compiled Inductor package (.pt2), built by `fashionclf quantize` for this CPU;
- onnxruntime: an ONNX model (.onnx), fp32 or int8 (QDQ);
- openvino: an ONNX model, or OpenVINO's own model (.xml beside its .bin, from NNCF's int8), at OpenVINO's defaults
  for the CPU in use (on CPUs with AMX or AVX-512 BF16 that means bfloat16 arithmetic for fp32 models) with the
  latency hint, which is the faster one for the single synchronous calls that fashionclf makes.

Which one serves a batch is decided by measurement on the machine in use, separately for single images and
for large batches, because the ranking flips.

Backends are registered by name, as models are: adding one is a function that opens a model file as a `Runner`,
decorated with `@register_backend` and the file suffixes it runs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from fashionclf.checkpoint import load_model, recorded_spec
from fashionclf.errors import FashionClfError
from fashionclf.models import ModelSpec, model_entry
from fashionclf.networks import example_input, large_batch
from fashionclf.runtime import LARGE_BATCH

METADATA_MODEL = "fashionclf.model"  # key of the model's registry name in ONNX and .pt2 metadata
METADATA_SPEC = "fashionclf.spec"  # the model's classes and input format, as JSON
METADATA_METHOD = "fashionclf.method"
METADATA_CPU = "fashionclf.cpu_capability"
METADATA_BATCH = "fashionclf.batch"
METADATA_KEYS = (METADATA_MODEL, METADATA_SPEC, METADATA_METHOD)
OPENVINO_METADATA = "fashionclf"  # the section of an OpenVINO model's runtime information that holds them
AGREEMENT_GOAL = 0.995  # top-1 agreement with fp32 on the test set an int8 model needs before inference uses it
SMALL_BATCH = 16  # up to this many images count as "single images" for the choice of backend
MAX_BATCH = 4096  # largest batch the exported and compiled models accept


@dataclass(frozen=True)
class Runner:
    backend: str
    path: Path
    model: str
    method: str
    run: Callable[[torch.Tensor], torch.Tensor]
    spec: ModelSpec = ModelSpec()
    fixed_batch: int | None = None  # a compiled package's batch: fewer images are padded to it, so cost as many

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.run(images)

    @property
    def label(self) -> str:
        return f"{self.method} on {self.backend}"


def dynamic_batch() -> tuple[dict, ...]:
    return ({0: torch.export.Dim("batch", min=1, max=MAX_BATCH)},)


def onnx_program(model: torch.nn.Module, example: torch.Tensor):
    """The model as an ONNX ModelProto with a dynamic batch axis (input "images", output "logits")."""
    with torch.no_grad():
        program = torch.onnx.export(
            model, (example,), dynamo=True, dynamic_shapes=dynamic_batch(),
            input_names=["images"], output_names=["logits"], verbose=False,
        )  # fmt: skip
    if program is None:  # dynamo=True always returns one; the exporter's type allows none
        raise RuntimeError("torch.onnx.export returned no program")
    return program.model_proto


Opener = Callable[[Path], Runner]  # a model file -> its runner on this backend


@dataclass(frozen=True)
class BackendEntry:
    name: str
    suffixes: tuple[str, ...]  # of the model files it runs
    open: Opener
    fallback: bool  # it is tried on files of a suffix no backend names


_BACKENDS: dict[str, BackendEntry] = {}


def register_backend(name: str, *, suffixes: tuple[str, ...], fallback: bool = False):
    """Register `opener(path) -> Runner` as the backend `name` for model files of `suffixes`. Of the backends that run
    a suffix, the one registered first opens a file given alone; the `fallback` backend is tried on files of a
    suffix none names."""

    def decorate(opener: Opener) -> Opener:
        if name in _BACKENDS:
            raise ValueError(f"backend {name!r} is registered twice")
        _BACKENDS[name] = BackendEntry(name, suffixes, opener, fallback)
        return opener

    return decorate


def backends_of(path: Path) -> tuple[str, ...]:
    """The backends that run a model file, the first being the one a file alone is opened with."""
    suffix = Path(path).suffix
    named = tuple(name for name, entry in _BACKENDS.items() if suffix in entry.suffixes)
    return named or tuple(name for name, entry in _BACKENDS.items() if entry.fallback)


def open_runner(path: Path, backend: str | None = None) -> Runner:
    """A runner for a model file on a backend that runs it (its first by default); a missing file, or one of another
    program or architecture, is one error line."""
    path = Path(path)
    if not path.is_file():
        raise FashionClfError(f"{path}: model file does not exist")
    backend = backend or backends_of(path)[0]
    if backend not in backends_of(path):
        raise FashionClfError(f"{path}: {backend} does not run {path.suffix} files")
    runner = _BACKENDS[backend].open(path)
    _check_output(runner)
    return runner


@register_backend("eager", suffixes=(".pt",), fallback=True)
def _eager(path: Path) -> Runner:
    model, checkpoint = load_model(path)
    method = checkpoint.get("quantization", "fp32")
    return Runner("eager", path, checkpoint["model"], method, model, recorded_spec(checkpoint))


@register_backend("onnxruntime", suffixes=(".onnx",))
def _onnxruntime(path: Path) -> Runner:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3  # ORT's warnings about hardware-specific graph rewrites are not for users
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types for unreadable models
        raise FashionClfError(f"{path}: not a readable ONNX model ({_first_line(exc)})") from None
    metadata = session.get_modelmeta().custom_metadata_map
    model = _model_named_in(metadata, path)
    input_name = session.get_inputs()[0].name

    def run(images: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {input_name: images.numpy()})[0])

    return Runner("onnxruntime", path, model, metadata.get(METADATA_METHOD, "fp32"), run, _spec_in(metadata, path))


OPENVINO_CONFIG = {"PERFORMANCE_HINT": "LATENCY"}


@register_backend("openvino", suffixes=(".onnx", ".xml"))
def _openvino(path: Path) -> Runner:
    import openvino as ov

    core = ov.Core()
    try:
        model = core.read_model(str(path))
    except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError for every kind of unreadable file
        raise FashionClfError(f"{path}: not a model OpenVINO reads ({_first_line(exc)})") from None
    metadata = _onnx_metadata(path) if path.suffix == ".onnx" else _openvino_metadata(model)
    name = _model_named_in(metadata, path)
    config = {**OPENVINO_CONFIG, "INFERENCE_NUM_THREADS": torch.get_num_threads()}
    try:
        request = core.compile_model(model, "CPU", config).create_infer_request()
    except RuntimeError as exc:  # a graph the CPU plugin has no kernels for (seen: ONNX Runtime's own int8)
        reason = next((line for line in str(exc).splitlines() if "No suitable" in line or "failed" in line), "")
        raise FashionClfError(f"{path}: OpenVINO cannot compile it for this CPU ({reason.strip()[:200]})") from None

    def run(images: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(request.infer([images.numpy()])[0].copy())  # the request reuses its output memory

    return Runner("openvino", path, name, metadata.get(METADATA_METHOD, "fp32"), run, _spec_in(metadata, path))


def _onnx_metadata(path: Path) -> dict[str, str]:
    import onnx

    return {entry.key: entry.value for entry in onnx.load(str(path), load_external_data=False).metadata_props}


def _openvino_metadata(model) -> dict[str, str]:
    """The metadata `quantize` writes into an OpenVINO model's runtime information."""
    present = [key for key in METADATA_KEYS if model.has_rt_info([OPENVINO_METADATA, key])]
    return {key: model.get_rt_info([OPENVINO_METADATA, key]).astype(str) for key in present}


@register_backend("inductor", suffixes=(".pt2",))
def _inductor(path: Path) -> Runner:
    try:
        compiled = torch._inductor.aoti_load_package(str(path))
        metadata = compiled.get_metadata()
    except Exception as exc:  # noqa: BLE001 - the package loader raises RuntimeError, zip and OS errors alike
        raise FashionClfError(f"{path}: not a loadable compiled model ({_first_line(exc)})") from None
    model = _model_named_in(metadata, path)
    built_for, here = metadata.get(METADATA_CPU), torch.backends.cpu.get_cpu_capability()
    if built_for != here:
        # Its kernels use the instructions of the CPU it was compiled on; running them elsewhere can crash.
        raise FashionClfError(f"{path}: compiled for a {built_for} CPU, this one is {here}; run fashionclf quantize")

    batch = int(metadata.get(METADATA_BATCH, LARGE_BATCH))

    def run(images: torch.Tensor) -> torch.Tensor:
        return torch.cat([compiled(chunk)[: len(part)] for part, chunk in _padded_chunks(images, batch)])

    method = metadata.get(METADATA_METHOD, "fp32")
    return Runner("inductor", path, model, method, run, _spec_in(metadata, path), fixed_batch=batch)


def _padded_chunks(images: torch.Tensor, batch: int):
    """(part, chunk): the batch-sized parts of `images`, the last one zero-padded to full size in `chunk`."""
    for part in images.split(batch):
        chunk = part if len(part) == batch else torch.cat([part, part.new_zeros(batch - len(part), *part.shape[1:])])
        yield part, chunk.contiguous()


def _model_named_in(metadata: dict, path: Path) -> str:
    name = metadata.get(METADATA_MODEL)
    if name is None:
        raise FashionClfError(f"{path}: not a fashionclf model (no {METADATA_MODEL!r} in its metadata)")
    model_entry(name)
    return name


def _spec_in(metadata: dict, path: Path) -> ModelSpec:
    """The spec a file records (Fashion-MNIST's for files of earlier versions, which record none)."""
    try:
        return ModelSpec.from_dict(json.loads(metadata[METADATA_SPEC]) if METADATA_SPEC in metadata else None)
    except (ValueError, KeyError, TypeError) as exc:
        raise FashionClfError(f"{path}: its {METADATA_SPEC!r} metadata is not a model spec ({exc})") from None


def _check_output(runner: Runner) -> None:
    """Run two example images; a file of another architecture fails here with its own reason."""
    images = example_input(runner.spec, 2)
    try:
        with torch.inference_mode():
            shape = tuple(runner(images).shape)
    except Exception as exc:  # noqa: BLE001 - each backend reports shape errors its own way
        raise FashionClfError(f"{runner.path}: does not run on {runner.model} input ({_first_line(exc)})") from None
    classes = len(runner.spec.classes)
    if shape != (2, classes):
        raise FashionClfError(f"{runner.path}: gives outputs of shape {shape}, expected (N, {classes})")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def latencies(runner: Runner, images: torch.Tensor, calls: int, warmup: int = 3) -> list[float]:
    """Seconds per call, after warm-up calls that let each backend build its kernels."""
    with torch.inference_mode():
        for _ in range(warmup):
            runner(images)
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            runner(images)
            times.append(time.perf_counter() - start)
    return times


def fastest(runners: list[Runner], batch_size: int, calls: int) -> Runner:
    if len(runners) == 1:
        return runners[0]
    images = example_input(runners[0].spec, batch_size)
    return min(runners, key=lambda runner: sorted(latencies(runner, images, calls))[calls // 2])


@dataclass(frozen=True)
class Dispatch:
    """Single images to the runner fastest at batch 1, larger batches to the one fastest at the large batch."""

    small: Runner
    large: Runner

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return (self.small if images.shape[0] <= SMALL_BATCH else self.large)(images)

    @property
    def description(self) -> str:
        if self.small is self.large:
            return f"{self.small.model} {self.small.label} ({self.small.path})"
        return (
            f"{self.small.model}: {self.small.label} for single images ({self.small.path}), "
            f"{self.large.label} for batches ({self.large.path})"
        )


def dispatch(files: list[tuple[Path, str]], opened: tuple[Runner, ...] = ()) -> Dispatch:
    """Open every (file, backend) that loads here and pick, by measurement among them and the runners already
    `opened`, the fastest for each batch regime."""
    runners, problems = list(opened), []
    for path, backend in files:
        try:
            runners.append(open_runner(path, backend))
        except FashionClfError as exc:
            problems.append(str(exc))
    if not runners:
        raise FashionClfError("; ".join(problems) or "no model files given")
    large = large_batch(runners[0].spec)
    return Dispatch(small=fastest(runners, 1, calls=30), large=fastest(runners, large, calls=5))
