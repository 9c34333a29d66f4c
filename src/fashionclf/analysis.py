"""Model analysis: receptive field, FLOPs and MACs per layer, and where the time really goes.

Conventions, printed with every result:
- MACs are the multiply-accumulates of convolution and linear layers; their FLOPs are 2 x MACs.
- Element-wise work is counted apart, in FLOPs: a bias add 1 per output element, BatchNorm (folded to scale and
  shift at inference) 2, ReLU 1, max-pooling k*k-1 comparisons per output, dropout 1 (training only).
- A training step is forward + backward: the backward of a conv or linear layer costs its forward MACs once for the
  weight gradient and once more for the input gradient, except for a layer whose input needs no gradient (the first).
"""

from __future__ import annotations

import math
import operator
import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.table import Table
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp
from tqdm import tqdm

from fashionclf import datasets, plots
from fashionclf.checkpoint import load_model, recorded_spec
from fashionclf.errors import FashionClfError
from fashionclf.layers import AvgMaxPool, Mirrored, SamePad, Scale, Standardise, ViewMean, ViewsToPhotos, Vote
from fashionclf.models import ModelSpec, create_model, model_entry
from fashionclf.networks import large_batch
from fashionclf.pretrained import ScaleInput, Views
from fashionclf.provenance import change_record, run_dataset
from fashionclf.rundir import RunDir, locked, open_run, write_json
from fashionclf.runtime import resolve_device

CONVENTION = (
    "MACs: multiply-accumulates of conv and linear layers (and a class vote's matrix product); FLOPs = 2 x MACs for "
    "them. Element-wise FLOPs (bias, BatchNorm, ReLU, pooling, dropout, scaling, resizing) are counted separately. "
    "A model that looks at several views of a picture counts every view. Receptive fields after a Views layer are "
    "in the pixels of its views. Training step = forward + backward (2 x forward MACs for conv/linear, less the "
    "input gradient of the first layer)."
)
SPATIAL = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)
POINTWISE = (nn.BatchNorm2d, nn.BatchNorm1d, nn.ReLU, nn.ReLU6, nn.Dropout, nn.Identity, Scale, ScaleInput,
             Standardise, Mirrored)  # fmt: skip
DENSE = (nn.Linear, nn.Flatten, AvgMaxPool, ViewsToPhotos, ViewMean, Vote)
SHIFTS = (SamePad,)  # move the window, keep its size and stride
RESTARTS = (Views,)  # new pictures: fields start again, in their pixels
OWN_LAYERS = (Scale, ScaleInput, Standardise, Mirrored, AvgMaxPool, ViewsToPhotos, ViewMean, Vote, SamePad, Views)
# Seconds of timing runs per batch size, for the layers together and for the whole model: the seed's FashionCNN
# gets every repeat in far less, EfficientNet-Lite0 at 4 x 18 views of 288 px would take minutes.
TIMING_BUDGET_S = 20.0
MIN_REPEATS = 1  # after the first call, which warms up
ERF_IMAGES = 200  # images whose gradients are averaged into the effective receptive field,
ERF_BUDGET = 2**24  # or fewer, to this many input values: 37 photos of 384 px (each four views through Lite0),
ERF_PASS_BUDGET = 2**21  # this many a backward pass (4 such photos): with 18 a pass, analyze peaked at 10 GB


@dataclass(frozen=True)
class Field:
    """Receptive field along (height, width): size in input pixels, jump (effective stride) and the centre of the
    first output unit's field, in input-pixel coordinates where the first pixel's centre is 0."""

    size: tuple[int, int]
    jump: tuple[int, int]
    start: tuple[float, float]

    def as_dict(self) -> dict:
        return {"size": list(self.size), "jump": list(self.jump), "start": list(self.start)}


@dataclass(frozen=True)
class Layer:
    """One step of the forward pass: a leaf module, or a function such as a residual addition."""

    name: str
    op: Callable
    kind: str
    in_shapes: tuple[tuple, ...]
    out_shape: tuple
    inputs: tuple[str, ...]  # the layers whose outputs it takes; INPUT for the image


INPUT = "input"
ADDITIONS = (operator.add, torch.add)


def trace_layers(model: nn.Module, input_size: tuple[int, ...]) -> list[Layer]:
    """Every step of the forward pass in the order it runs, with the data flow between them (torch.fx), so a
    residual branch is told apart from the main path."""
    return list(_traced_layers(model, input_size)[1].values())


def _traced_layers(model: nn.Module, input_size: tuple[int, ...]) -> tuple[fx.GraphModule, dict[fx.Node, Layer]]:
    graph = _trace(model)
    was_training = model.training
    model.eval()
    try:
        ShapeProp(graph).propagate(torch.zeros(1, *input_size))
    finally:
        model.train(was_training)
    modules = dict(model.named_modules())
    names: dict[fx.Node, str] = {}
    layers: dict[fx.Node, Layer] = {}
    for node in graph.graph.nodes:
        if node.op == "placeholder":
            names[node] = INPUT
        elif node.op != "output":
            layers[node] = _layer(node, names, modules)
            names[node] = layers[node].name
    return graph, layers


class _Tracer(fx.Tracer):
    """torch.fx's tracer, with the project's own layers (Scale) kept whole like torch.nn's."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return isinstance(module, OWN_LAYERS) or super().is_leaf_module(module, qualified_name)


def _trace(model: nn.Module) -> fx.GraphModule:
    try:
        return fx.GraphModule(model, _Tracer().trace(model))
    except Exception as error:  # fx raises many types for code it cannot follow
        raise FashionClfError(f"model {type(model).__name__} cannot be analysed: torch.fx cannot trace it "
                              f"({type(error).__name__}: {error})") from None  # fmt: skip


def _layer(node: fx.Node, names: dict[fx.Node, str], modules: dict[str, nn.Module]) -> Layer:
    sources = [arg for arg in node.args if isinstance(arg, fx.Node)]
    in_shapes = tuple(tuple(source.meta["tensor_meta"].shape) for source in sources)
    out_shape = tuple(node.meta["tensor_meta"].shape)
    inputs = tuple(names[source] for source in sources)
    if node.op == "call_module":
        target = str(node.target)  # a module's qualified name
        module = modules[target]
        if not isinstance(module, SPATIAL + POINTWISE + DENSE + SHIFTS + RESTARTS):
            raise _unknown(f"layer {target!r} of type {type(module).__name__}")
        return Layer(target, module, type(module).__name__, in_shapes, out_shape, inputs)
    if node.op == "call_function" and node.target in ADDITIONS and len(sources) == 2:
        owner = next(reversed(node.meta.get("nn_module_stack") or {"": None}))  # the block that adds
        return Layer(f"{owner}.{node.name}" if owner else node.name, operator.add, "add", in_shapes, out_shape, inputs)
    raise _unknown(f"layer {node.name!r} ({node.op} {getattr(node.target, '__name__', node.target)})")


def _unknown(layer: str) -> FashionClfError:
    return FashionClfError(f"{layer} cannot be analysed: its receptive field and FLOPs are unknown to fashionclf")


def _pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, tuple | list) else (value, value)


def receptive_fields(model: nn.Module, input_size: tuple[int, ...]) -> dict[str, Field | None]:
    return layer_fields(trace_layers(model, input_size))


def layer_fields(layers: list[Layer]) -> dict[str, Field | None]:
    """The field of every layer's output units; None from the first dense layer on (they see the whole input).
    Where paths meet (a residual addition), a unit sees the union of what each path sees."""
    fields: dict[str, Field | None] = {INPUT: Field((1, 1), (1, 1), (0.0, 0.0))}
    for layer in layers:
        incoming = [field for name in layer.inputs if (field := fields[name]) is not None]
        if isinstance(layer.op, RESTARTS):
            fields[layer.name] = fields[INPUT]
        elif isinstance(layer.op, DENSE) or len(incoming) < len(layer.inputs):
            fields[layer.name] = None
        elif isinstance(layer.op, SPATIAL):
            fields[layer.name] = _grow(incoming[0], layer.op)
        elif isinstance(layer.op, SHIFTS):
            fields[layer.name] = _shifted(incoming[0], layer.op, layer.in_shapes[0])
        else:
            fields[layer.name] = _union(layer.name, incoming)
    del fields[INPUT]
    return fields


def _union(name: str, incoming: list[Field]) -> Field:
    if len({field.jump for field in incoming}) > 1:
        raise FashionClfError(f"layer {name!r} adds maps whose units lie at different strides; its receptive field "
                              "is not one rectangle")  # fmt: skip
    size, start = [], []
    for axis in range(2):
        low = min(field.start[axis] - (field.size[axis] - 1) / 2 for field in incoming)
        high = max(field.start[axis] + (field.size[axis] - 1) / 2 for field in incoming)
        size.append(int(high - low) + 1)
        start.append((low + high) / 2)
    return Field((size[0], size[1]), incoming[0].jump, (start[0], start[1]))


def _grow(field: Field, module: nn.Module) -> Field:
    kernel, stride, padding = _pair(module.kernel_size), _pair(module.stride), _pair(module.padding)
    dilation = _pair(getattr(module, "dilation", 1))
    size, jump, start = [], [], []
    for axis in range(2):
        span = dilation[axis] * (kernel[axis] - 1)  # distance between the outer taps of the kernel
        size.append(field.size[axis] + span * field.jump[axis])
        start.append(field.start[axis] + (span / 2 - padding[axis]) * field.jump[axis])
        jump.append(field.jump[axis] * stride[axis])
    return Field((size[0], size[1]), (jump[0], jump[1]), (start[0], start[1]))


def _shifted(field: Field, pad: SamePad, in_shape: tuple) -> Field:
    """Padding before a map shifts where its first unit's field lies, by the padding's pixels at the map's jump."""
    before = [pad.amounts(in_shape[axis])[0] for axis in (-2, -1)]
    start = tuple(field.start[axis] - before[axis] * field.jump[axis] for axis in range(2))
    return Field(field.size, field.jump, (start[0], start[1]))


def last_spatial_field(fields: dict[str, Field | None]) -> tuple[str, Field]:
    return [(name, field) for name, field in fields.items() if field is not None][-1]


def layer_costs(layer: Layer, first: bool) -> dict:
    """Per-image MACs, FLOPs and bytes of one layer (shapes include a batch of 1)."""
    module, out_shape = layer.op, layer.out_shape
    out_elements = _numel(out_shape)
    macs = 0
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        macs = out_elements * (module.in_channels // module.groups) * kh * kw
    elif isinstance(module, nn.Linear):  # on every row: a picture's views each have theirs
        macs = out_elements // module.out_features * module.in_features * module.out_features
    elif isinstance(module, Vote):
        theirs, ours = module.votes.shape
        macs = out_elements // ours * theirs * ours
    has_bias = isinstance(module, nn.Conv2d | nn.Linear) and module.bias is not None
    if has_bias or layer.kind == "add":
        elementwise = out_elements
    elif isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d):
        elementwise = 2 * out_elements
    elif isinstance(module, nn.MaxPool2d | nn.AvgPool2d):
        kh, kw = _pair(module.kernel_size)
        elementwise = (kh * kw - 1) * out_elements
    elif isinstance(module, nn.ReLU | nn.ReLU6 | Scale | ViewMean):
        elementwise = out_elements if not isinstance(module, ViewMean) else _numel(layer.in_shapes[0])
    elif isinstance(module, ScaleInput | Standardise):
        elementwise = 2 * out_elements
    elif isinstance(module, AvgMaxPool):
        elementwise = 2 * _numel(layer.in_shapes[0])
    elif isinstance(module, Views):  # bilinear resizing of the whole photo: 4 products and 3 sums a pixel
        elementwise = 7 * out_elements // Views.count
    else:
        elementwise = 0
    training_elementwise = elementwise + (out_elements if isinstance(module, nn.Dropout) else 0)
    backward_macs = macs * (1 if first else 2)
    parameters = list(module.parameters()) if isinstance(module, nn.Module) else []
    params = sum(p.numel() for p in parameters)
    param_bytes = sum(p.numel() * p.element_size() for p in parameters)
    activation_bytes = out_elements * 4
    moved = param_bytes + sum(_numel(shape) for shape in layer.in_shapes) * 4 + activation_bytes
    return {
        "name": layer.name,
        "type": layer.kind,
        "output_shape": list(out_shape[1:]),
        "params": params,
        "param_bytes": param_bytes,
        "activation_bytes": activation_bytes,
        "macs": macs,
        "flops": 2 * macs,
        "elementwise_flops": elementwise,
        "training_macs": macs + backward_macs,
        # Element-wise backward is taken to cost what its forward does (one gradient op per element).
        "training_flops": 2 * (macs + backward_macs) + 2 * training_elementwise,
        "arithmetic_intensity": (2 * macs + elementwise) / moved if moved else 0.0,
    }


def _numel(shape: tuple) -> int:
    total = 1
    for dim in shape:
        total *= dim
    return total


def time_layers(layers: list[Layer], batch_size: int, repeats: int, device: torch.device) -> dict[str, dict]:
    """Median and spread (interquartile range) of each layer's forward and backward time, run alone on random
    inputs of its real shapes, after warm-up. A benchmark: printed and saved, never asserted."""
    timings = {}
    budget_s = TIMING_BUDGET_S / (2 * len(layers))
    for layer in tqdm(layers, desc=f"timing layers at batch {batch_size}", unit="layer", disable=None, leave=False):
        op = layer.op.to(device) if isinstance(layer.op, nn.Module) else layer.op
        # Traced at batch 1: a leading axis of k there (a picture's k views) is k x batch_size here.
        inputs = [torch.rand(batch_size * shape[0], *shape[1:], device=device, requires_grad=True)
                  for shape in layer.in_shapes]  # fmt: skip
        with torch.no_grad(), _mode(op, training=False):
            forward = _timed(lambda op=op, inputs=inputs: op(*inputs), repeats, device, budget_s)
        with _mode(op, training=True):
            out = op(*inputs)
        grad = torch.ones_like(out)
        backward = _timed(
            lambda o=out, i=inputs, g=grad: torch.autograd.grad(o, i, g, retain_graph=True), repeats, device, budget_s
        )
        timings[layer.name] = {"forward": forward, "backward": backward}
    return timings


@contextmanager
def _mode(op: Callable, training: bool):
    """A module in training or eval mode for the block, restored after; functions have no mode."""
    if not isinstance(op, nn.Module):
        yield
        return
    was_training = op.training
    op.train(training)
    try:
        yield
    finally:
        op.train(was_training)


def _timed(fn, repeats: int, device: torch.device, budget_s: float = math.inf) -> dict:
    """Median and interquartile range of `repeats` calls after warm-up, fewer (at least MIN_REPEATS) where they
    would take longer than `budget_s`: a pretrained photo model at its large batch runs seconds a call."""
    once = _seconds(fn, device)
    repeats = calls_within(budget_s, once, repeats, MIN_REPEATS)
    for _ in range(max(1, repeats // 5) - 1):
        fn()
    samples = [_seconds(fn, device) * 1e6 for _ in range(repeats)]
    quartiles = statistics.quantiles(samples, n=4) if len(samples) > 1 else [samples[0]] * 3
    return {"median_us": statistics.median(samples), "iqr_us": quartiles[2] - quartiles[0], "repeats": repeats}


def calls_within(budget_s: float, seconds_a_call: float, wanted: int, least: int = 1) -> int:
    """How many of `wanted` calls, each taking `seconds_a_call`, fit in `budget_s`, and at least `least`: how
    analyze and bench bound their timing of a model that runs seconds a call."""
    return max(least, int(min(wanted, budget_s / max(seconds_a_call, 1e-9))))


def _seconds(fn, device: torch.device) -> float:
    _sync(device)
    started = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - started


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def analyze_model(
    model: nn.Module,
    input_size: tuple[int, ...],
    batch_sizes: tuple[int, ...] = (1, 256),
    repeats: int = 30,
    device: torch.device | None = None,
) -> dict:
    """Everything the report's three sections need, JSON-ready."""
    device = device or torch.device("cpu")
    model = model.cpu()
    layers = trace_layers(model, input_size)
    fields = layer_fields(layers)
    rows = cost_rows(layers)
    for row in rows:
        field = fields[row["name"]]
        row["receptive_field"] = field.as_dict() if field else "whole input"
    timings = {batch: time_layers(layers, batch, repeats, device) for batch in batch_sizes}
    _add_shares(rows, timings)
    last_name, last = last_spatial_field(fields)
    keys = ("params", "param_bytes", "macs", "flops", "elementwise_flops", "training_macs", "training_flops")
    total = {key: sum(row[key] for row in rows) for key in keys}
    return {
        "convention": CONVENTION,
        "input_size": list(input_size),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "batch_sizes": list(batch_sizes),
        "repeats": repeats,
        "total": total,
        "receptive_field": {"layer": last_name, **last.as_dict()},
        "head": _head_statement(input_size, last_name, last),
        "layers": rows,
    }


def cost_rows(layers: list[Layer]) -> list[dict]:
    first_weighted = next(layer.name for layer in layers if isinstance(layer.op, nn.Conv2d | nn.Linear))
    return [layer_costs(layer, first=layer.name == first_weighted) for layer in layers]


def forward_flops(model: nn.Module, input_size: tuple[int, ...]) -> int:
    """Conv and linear FLOPs of one image's forward pass (2 x MACs)."""
    return sum(row["flops"] for row in cost_rows(trace_layers(model, input_size)))


def _add_shares(rows: list[dict], timings: dict[int, dict[str, dict]]) -> None:
    total_flops = sum(row["flops"] + row["elementwise_flops"] for row in rows) or 1
    for batch, by_layer in timings.items():
        forward_total = sum(t["forward"]["median_us"] for t in by_layer.values()) or 1
        for row in rows:
            t = by_layer[row["name"]]
            row.setdefault("time", {})[f"batch_{batch}"] = {
                "forward_median_us": t["forward"]["median_us"],
                "forward_iqr_us": t["forward"]["iqr_us"],
                "backward_median_us": t["backward"]["median_us"],
                "backward_iqr_us": t["backward"]["iqr_us"],
                "forward_time_share": t["forward"]["median_us"] / forward_total,
            }
    for row in rows:
        row["flop_share"] = (row["flops"] + row["elementwise_flops"]) / total_flops


def _head_statement(input_size: tuple[int, ...], last_name: str, last: Field) -> str:
    height, width = input_size[-2:]
    covers = last.size[0] >= height and last.size[1] >= width
    reach = f", more than the {height}x{width} image, so each unit already sees all of it" if covers else ""
    return (
        f"The last spatial layer ({last_name}) sees {last.size[0]}x{last.size[1]} pixels per unit{reach}, its units "
        f"{last.jump[0]} pixels apart; the fully connected head takes all of them at once, so every output class "
        f"sees the whole {height}x{width} image."
    )


def effective_receptive_field(
    model: nn.Module, layer: str, images: torch.Tensor, per_pass: int
) -> tuple[torch.Tensor, tuple]:
    """Mean |d unit / d input| of the centre unit of `layer` over `images` (N, C, H, W) (Luo et al., 2016), `per_pass`
    images at a time, and that unit's (row, column) index."""
    model.eval()
    total = torch.zeros(images.shape[2:])
    for start in range(0, len(images), per_pass):
        chunk = images[start : start + per_pass].clone().requires_grad_(True)
        out = layer_output(model, layer, chunk)
        unit = (out.shape[2] // 2, out.shape[3] // 2)
        (grad,) = torch.autograd.grad(out[:, :, unit[0], unit[1]].sum(), chunk)
        total += grad.abs().sum(dim=(0, 1))
    return total / (len(images) * images.shape[1]), unit


def layer_output(model: nn.Module, layer: str, images: torch.Tensor) -> torch.Tensor:
    """The output of one layer as trace_layers names it (a module, or a function such as an addition)."""
    graph, layers = _traced_layers(model, tuple(images.shape[1:]))
    wanted = next(node for node, traced in layers.items() if traced.name == layer)
    captured = {}

    class Capture(fx.Interpreter):
        def run_node(self, node: fx.Node):
            result = super().run_node(node)
            if node is wanted:
                captured["out"] = result
            return result

    Capture(graph).run(images)
    return captured["out"]


def analyze(
    run_dir: Path | None = None,
    model_name: str | None = None,
    batch_size: int | None = None,
    repeats: int = 30,
    device: str = "cpu",
    allow_changed_data: bool = False,
) -> dict:
    """Analyse a run's model (saving analysis.json and figures into the run) or an untrained registered model. A
    run's effective receptive field is measured on its data: refused where it changed since training, before any
    time is spent, unless `allow_changed_data`."""
    if (run_dir is None) == (model_name is None):
        raise FashionClfError("give either a run directory or --model NAME")
    if batch_size is not None and batch_size < 1:
        raise FashionClfError(f"--batch-size must be at least 1, got {batch_size}")
    torch_device = resolve_device(device)
    run = open_run(run_dir) if run_dir is not None else None
    if run is not None:
        model, checkpoint = load_model(run.best_checkpoint)
        model_name, spec = checkpoint["model"], recorded_spec(checkpoint)
        data, changes = run_dataset(run, spec.input, "analyze", allow_changed_data)
        evaluation = data.evaluation_split
    else:
        name = str(model_name)  # given when no run is
        model, spec = create_model(name), model_entry(name).spec()
    input_size = spec.input_size
    batch_size = batch_size or large_batch(spec)
    result = {"model": model_name, **analyze_model(model, input_size, (1, batch_size), repeats, torch_device)}
    result["model_forward_us"] = _time_model(model, input_size, (1, batch_size), repeats, torch_device)
    if run is not None:
        result |= change_record(changes)
        _save_to_run(run, model.cpu(), spec, evaluation, result)
    return result


def _time_model(
    model: nn.Module, input_size: tuple[int, ...], batch_sizes: tuple[int, ...], repeats: int, device: torch.device
) -> dict:
    """The whole forward pass, to set beside the sum of the layers timed alone."""
    model = model.eval().to(device)
    timings = {}
    with torch.no_grad():
        for batch in batch_sizes:
            x = torch.rand(batch, *input_size, device=device)
            timings[f"batch_{batch}"] = _timed(lambda x=x: model(x), repeats, device, TIMING_BUDGET_S)
    return timings


def _save_to_run(
    run: RunDir, model: nn.Module, spec: ModelSpec, evaluation: tuple[str, datasets.Split], result: dict
) -> None:
    split, evaluated = evaluation
    count = min(ERF_IMAGES, max(1, ERF_BUDGET // evaluated.images[0].numel()))
    images = datasets.to_float(evaluated.images[:count])
    result["effective_field_images"] = {"images": len(images), "split": split}
    layer = result["receptive_field"]["layer"]
    per_pass = max(1, ERF_PASS_BUDGET // evaluated.images[0].numel())
    erf, unit = effective_receptive_field(model, layer, images, per_pass)
    with locked(run.root, "fashionclf analyze"):
        plots.effective_receptive_field(
            erf.numpy(), result["receptive_field"], unit, run.figure("effective_receptive_field")
        )
        plots.time_vs_flops(result["layers"], result["batch_sizes"], run.figure("time_vs_flops"))
        write_json(run.analysis, result)


def analysis_table(result: dict) -> Table:
    """The analysis as a terminal table."""
    field = result["receptive_field"]
    total = result["total"]
    large = f"batch_{result['batch_sizes'][-1]}"
    table = Table(
        title=f"{result['model']}: {total['params']:,} params, {total['macs']:,} MACs = {total['flops']:,} FLOPs "
        f"(conv+linear) + {total['elementwise_flops']:,} element-wise; receptive field of {field['layer']}: "
        f"{field['size'][0]}x{field['size'][1]}, jump {field['jump'][0]}",
        caption=result["convention"],
    )
    for column in ("layer", "type", "output", "params", "MACs", "RF", "FLOP share", f"time share {large}"):
        table.add_column(column, justify="left" if column in ("layer", "type", "output", "RF") else "right")
    for row in result["layers"]:
        rf = row["receptive_field"]
        table.add_row(
            row["name"], row["type"], "x".join(map(str, row["output_shape"])), f"{row['params']:,}",
            f"{row['macs']:,}", rf if isinstance(rf, str) else f"{rf['size'][0]}/{rf['jump'][0]}",
            f"{row['flop_share']:.1%}", f"{row['time'][large]['forward_time_share']:.1%}",
        )  # fmt: skip
    return table
