"""Model analysis: receptive field, FLOPs and MACs per layer, and where the time really goes.

Conventions, printed with every result:
- MACs are the multiply-accumulates of convolution and linear layers; their FLOPs are 2 x MACs.
- Element-wise work is counted apart, in FLOPs: a bias add 1 per output element, BatchNorm (folded to scale and
  shift at inference) 2, ReLU 1, max-pooling k*k-1 comparisons per output, dropout 1 (training only).
- A training step is forward + backward: the backward of a conv or linear layer costs its forward MACs once for the
  weight gradient and once more for the input gradient, except for a layer whose input needs no gradient (the first).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.table import Table
from torch import nn

from fashionclf import data as fmnist
from fashionclf import plots
from fashionclf.errors import FashionClfError
from fashionclf.models import create_model, model_entry
from fashionclf.rundir import RunDir, load_model, open_run, write_json
from fashionclf.sources import load_dataset
from fashionclf.train import resolve_device, run_data

CONVENTION = (
    "MACs: multiply-accumulates of conv and linear layers; FLOPs = 2 x MACs for them. Element-wise FLOPs (bias, "
    "BatchNorm, ReLU, pooling, dropout) are counted separately. Training step = forward + backward (2 x forward MACs "
    "for conv/linear, less the input gradient of the first layer)."
)
SPATIAL = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)
POINTWISE = (nn.BatchNorm2d, nn.BatchNorm1d, nn.ReLU, nn.Dropout, nn.Identity)
DENSE = (nn.Linear, nn.Flatten)


@dataclass(frozen=True)
class Field:
    """Receptive field along (height, width): size in input pixels, jump (effective stride) and the centre of the
    first output unit's field, in input-pixel coordinates where the first pixel's centre is 0."""

    size: tuple[int, int]
    jump: tuple[int, int]
    start: tuple[float, float]

    def as_dict(self) -> dict:
        return {"size": list(self.size), "jump": list(self.jump), "start": list(self.start)}


def leaf_layers(model: nn.Module, input_size: tuple[int, ...]) -> list[tuple[str, nn.Module, tuple, tuple]]:
    """(name, module, input shape, output shape) of every leaf module in the order the forward pass runs them."""
    calls: list[tuple[str, nn.Module, tuple, tuple]] = []
    hooks = [
        module.register_forward_hook(
            lambda mod, args, out, name=name: calls.append((name, mod, tuple(args[0].shape), tuple(out.shape)))
        )
        for name, module in model.named_modules()
        if not list(module.children())
    ]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_size))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    for name, module, _, _ in calls:
        if not isinstance(module, SPATIAL + POINTWISE + DENSE):
            raise FashionClfError(f"layer {name!r} of type {type(module).__name__} cannot be analysed: its receptive "
                                  "field and FLOPs are unknown to fashionclf")  # fmt: skip
    return calls


def _pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, tuple | list) else (value, value)


def receptive_fields(model: nn.Module, input_size: tuple[int, ...]) -> dict[str, Field | None]:
    """The field of every layer's output units; None from the first dense layer on (they see the whole input)."""
    field = Field((1, 1), (1, 1), (0.0, 0.0))
    fields: dict[str, Field | None] = {}
    dense = False
    for name, module, _, _ in leaf_layers(model, input_size):
        dense = dense or isinstance(module, DENSE)
        if dense:
            fields[name] = None
            continue
        if isinstance(module, SPATIAL):
            field = _grow(field, module)
        fields[name] = field
    return fields


def _grow(field: Field, module: nn.Module) -> Field:
    kernel, stride, padding = _pair(module.kernel_size), _pair(module.stride), _pair(module.padding)
    dilation = _pair(getattr(module, "dilation", 1))
    size, jump, start = [], [], []
    for axis in range(2):
        span = dilation[axis] * (kernel[axis] - 1)  # distance between the outer taps of the kernel
        size.append(field.size[axis] + span * field.jump[axis])
        start.append(field.start[axis] + (span / 2 - padding[axis]) * field.jump[axis])
        jump.append(field.jump[axis] * stride[axis])
    return Field(tuple(size), tuple(jump), tuple(start))


def last_spatial_field(fields: dict[str, Field | None]) -> tuple[str, Field]:
    name = [name for name, field in fields.items() if field is not None][-1]
    return name, fields[name]


def layer_costs(name: str, module: nn.Module, in_shape: tuple, out_shape: tuple, first: bool) -> dict:
    """Per-image MACs, FLOPs and bytes of one layer (shapes include a batch of 1)."""
    out_elements = _numel(out_shape)
    macs = 0
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        macs = out_elements * (module.in_channels // module.groups) * kh * kw
    elif isinstance(module, nn.Linear):
        macs = module.in_features * module.out_features
    has_bias = isinstance(module, nn.Conv2d | nn.Linear) and module.bias is not None
    if has_bias:
        elementwise = out_elements
    elif isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d):
        elementwise = 2 * out_elements
    elif isinstance(module, nn.MaxPool2d | nn.AvgPool2d):
        kh, kw = _pair(module.kernel_size)
        elementwise = (kh * kw - 1) * out_elements
    elif isinstance(module, nn.ReLU):
        elementwise = out_elements
    else:
        elementwise = 0
    training_elementwise = elementwise + (out_elements if isinstance(module, nn.Dropout) else 0)
    backward_macs = macs * (1 if first else 2)
    params = sum(p.numel() for p in module.parameters())
    param_bytes = sum(p.numel() * p.element_size() for p in module.parameters())
    activation_bytes = out_elements * 4
    moved = param_bytes + _numel(in_shape) * 4 + activation_bytes
    return {
        "name": name,
        "type": type(module).__name__,
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


def time_layers(
    layers: list[tuple[str, nn.Module, tuple, tuple]], batch_size: int, repeats: int, device: torch.device
) -> dict[str, dict]:
    """Median and spread (interquartile range) of each layer's forward and backward time, run alone on a random
    input of its real shape, after warm-up. A benchmark: printed and saved, never asserted."""
    timings = {}
    for name, module, in_shape, _ in layers:
        module = module.to(device)
        was_training = module.training
        module.train()
        x = torch.rand(batch_size, *in_shape[1:], device=device, requires_grad=True)
        with torch.no_grad():
            module.eval()
            forward = _measure(lambda m=module, x=x: m(x), repeats, device)
        module.train()
        out = module(x)
        grad = torch.ones_like(out)
        backward = _measure(lambda o=out, x=x, g=grad: torch.autograd.grad(o, x, g, retain_graph=True), repeats, device)
        module.train(was_training)
        timings[name] = {"forward": forward, "backward": backward}
    return timings


def _measure(fn, repeats: int, device: torch.device) -> dict:
    for _ in range(max(2, repeats // 5)):
        fn()
    samples = []
    for _ in range(repeats):
        _sync(device)
        started = time.perf_counter()
        fn()
        _sync(device)
        samples.append((time.perf_counter() - started) * 1e6)
    quartiles = statistics.quantiles(samples, n=4) if len(samples) > 1 else [samples[0]] * 3
    return {"median_us": statistics.median(samples), "iqr_us": quartiles[2] - quartiles[0], "repeats": repeats}


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
    layers = leaf_layers(model, input_size)
    fields = receptive_fields(model, input_size)
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


def cost_rows(layers: list[tuple[str, nn.Module, tuple, tuple]]) -> list[dict]:
    first_weighted = next(name for name, module, _, _ in layers if isinstance(module, nn.Conv2d | nn.Linear))
    return [layer_costs(name, module, i, o, first=name == first_weighted) for name, module, i, o in layers]


def forward_flops(model: nn.Module, input_size: tuple[int, ...]) -> int:
    """Conv and linear FLOPs of one image's forward pass (2 x MACs)."""
    return sum(row["flops"] for row in cost_rows(leaf_layers(model, input_size)))


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
    return (
        f"The last spatial layer ({last_name}) sees {last.size[0]}x{last.size[1]} pixels per unit, its units "
        f"{last.jump[0]} pixels apart; the fully connected head takes all of them at once, so every output class "
        f"sees the whole {height}x{width} image."
    )


def effective_receptive_field(model: nn.Module, layer: str, images: torch.Tensor) -> tuple[torch.Tensor, tuple]:
    """Mean |d unit / d input| of the centre unit of `layer` over `images` (N, 1, H, W) (Luo et al., 2016), and
    that unit's (row, column) index."""
    module = dict(model.named_modules())[layer]
    captured = {}
    hook = module.register_forward_hook(lambda _m, _a, out: captured.__setitem__("out", out))
    model.eval()
    images = images.clone().requires_grad_(True)
    try:
        model(images)
    finally:
        hook.remove()
    out = captured["out"]
    unit = (out.shape[2] // 2, out.shape[3] // 2)
    (grad,) = torch.autograd.grad(out[:, :, unit[0], unit[1]].sum(), images)
    return grad.abs().mean(dim=(0, 1)), unit


def analyze(
    run_dir: Path | None = None,
    model_name: str | None = None,
    batch_size: int = 256,
    repeats: int = 30,
    device: str = "cpu",
) -> dict:
    """Analyse a run's model (saving analysis.json and figures into the run) or an untrained registered model."""
    if (run_dir is None) == (model_name is None):
        raise FashionClfError("give either a run directory or --model NAME")
    if batch_size < 1:
        raise FashionClfError(f"--batch-size must be at least 1, got {batch_size}")
    torch_device = resolve_device(device)
    if run_dir is not None:
        run = open_run(run_dir)
        model, checkpoint = load_model(run.best_checkpoint)
        model_name = checkpoint["model"]
    else:
        run, model = None, create_model(model_name)
    input_size = model_entry(model_name).input_size
    result = {"model": model_name, **analyze_model(model, input_size, (1, batch_size), repeats, torch_device)}
    result["model_forward_us"] = _time_model(model, input_size, (1, batch_size), repeats, torch_device)
    if run is not None:
        _save_to_run(run, model.cpu(), result)
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
            timings[f"batch_{batch}"] = _measure(lambda x=x: model(x), repeats, device)
    return timings


def _save_to_run(run: RunDir, model: nn.Module, result: dict) -> None:
    images = fmnist.to_float(load_dataset(run_data(run)).test.images[:200])
    layer = result["receptive_field"]["layer"]
    erf, unit = effective_receptive_field(model, layer, images)
    figure = run.figures / "effective_receptive_field.png"
    plots.effective_receptive_field(erf.numpy(), result["receptive_field"], unit, figure)
    plots.time_vs_flops(result["layers"], result["batch_sizes"], run.figures / "time_vs_flops.png")
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
