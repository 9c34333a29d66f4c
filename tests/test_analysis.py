import copy
import json
import subprocess
import sys

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from fashionclf.analysis import analyze, analyze_model, layer_output, receptive_fields
from fashionclf.errors import FashionClfError, FashionClfWarning
from fashionclf.files import file_sha256
from fashionclf.models import create_model, list_models
from fashionclf.networks import example_input

from synthetic import csv_run, quick_spec, synthetic_split, write_csv


@pytest.fixture(scope="module")
def fashion_cnn_analysis():
    return analyze(model_name="fashion_cnn", batch_size=8, repeats=2)


def strided_dilated_model() -> nn.Module:
    """Stride, dilation and padding in one small net, so the field arithmetic is exercised beyond FashionCNN."""
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, dilation=2, padding=2),
        nn.BatchNorm2d(4),
        nn.Conv2d(4, 8, 3, stride=2, padding=1),
        nn.MaxPool2d(3, stride=2, padding=1),
        nn.Conv2d(8, 8, 5),
        nn.Flatten(),
        nn.Linear(8 * 3 * 3, 10),
    )


def test_fashion_cnn_totals(fashion_cnn_analysis):
    total = fashion_cnn_analysis["total"]
    assert total["params"] == 1_475_338
    assert total["macs"] == 4_335_600
    assert total["flops"] == 8_671_200


def test_flops_agree_with_pytorchs_own_counter(fashion_cnn_analysis):
    model = create_model("fashion_cnn")
    with FlopCounterMode(display=False) as forward:
        model(torch.rand(1, 1, 28, 28))
    assert fashion_cnn_analysis["total"]["flops"] == forward.get_total_flops()
    with FlopCounterMode(display=False) as step:
        model(torch.rand(1, 1, 28, 28)).sum().backward()
    assert 2 * fashion_cnn_analysis["total"]["training_macs"] == step.get_total_flops()


def test_fashion_cnn_receptive_field(fashion_cnn_analysis):
    field = fashion_cnn_analysis["receptive_field"]
    assert field == {"layer": "layer2.3", "size": [10, 10], "jump": [4, 4], "start": [3.5, 3.5]}
    layers = {row["name"]: row for row in fashion_cnn_analysis["layers"]}
    assert layers["layer1.0"]["receptive_field"]["size"] == [3, 3]
    assert layers["layer2.0"]["receptive_field"] == {"size": [8, 8], "jump": [2, 2], "start": [2.5, 2.5]}
    assert layers["fc1"]["receptive_field"] == "whole input"
    assert "whole 28x28 image" in fashion_cnn_analysis["head"]


def test_json_output_has_the_promised_keys():
    result = subprocess.run(
        [sys.executable, "-m", "fashionclf", "analyze", "--model", "fashion_cnn", "--batch-size", "4",
         "--repeats", "2", "--json"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    data = json.loads(result.stdout)
    assert {"params", "macs", "flops"} <= data["total"].keys()
    assert {"size", "jump", "start"} <= data["receptive_field"].keys()
    for row in data["layers"]:
        assert {"name", "type", "output_shape", "params", "macs", "flops", "receptive_field", "time"} <= row.keys()
        assert row["time"]["batch_4"]["forward_median_us"] > 0


def linearized(model: nn.Module) -> nn.Module:
    """Same geometry, but every path carries gradient: average instead of max pooling, no ReLU, positive weights."""
    model = copy.deepcopy(model).eval()
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.MaxPool2d):
                setattr(module, name, nn.AvgPool2d(child.kernel_size, child.stride, child.padding))
            elif isinstance(child, nn.ReLU):
                setattr(module, name, nn.Identity())
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.abs_().add_(0.01)
    return model


def gradient_support(model: nn.Module, layer: str, unit: tuple[int, int]) -> torch.Tensor:
    image = torch.rand(1, 1, 28, 28, requires_grad=True)
    (grad,) = torch.autograd.grad(layer_output(model, layer, image)[0, 0, unit[0], unit[1]], image)
    return grad[0, 0] != 0


def computed_support(field, unit: tuple[int, int]) -> torch.Tensor:
    mask = torch.zeros(28, 28, dtype=torch.bool)
    bounds = []
    for axis in range(2):
        centre = field.start[axis] + unit[axis] * field.jump[axis]
        low, high = centre - (field.size[axis] - 1) / 2, centre + (field.size[axis] - 1) / 2
        bounds.append(slice(max(0, int(low)), min(27, int(high)) + 1))
    mask[bounds[0], bounds[1]] = True
    return mask


@pytest.mark.parametrize(
    "build", [lambda: create_model("fashion_cnn"), strided_dilated_model, lambda: create_model("resnet9", width=2)]
)
def test_gradient_is_non_zero_exactly_inside_the_computed_field(build):
    model = linearized(build())
    fields = receptive_fields(model, (1, 28, 28))
    for layer, field in fields.items():
        if field is None:
            continue
        with torch.no_grad():
            shape = layer_output(model, layer, torch.zeros(1, 1, 28, 28)).shape[-2:]
        for unit in [(0, 0), (shape[0] // 2, shape[1] // 2), (shape[0] - 1, shape[1] - 1)]:
            assert torch.equal(gradient_support(model, layer, unit), computed_support(field, unit)), (layer, unit)


def test_the_strided_dilated_model_field():
    fields = receptive_fields(strided_dilated_model(), (1, 28, 28))
    assert fields["2"].size == (7, 7)  # 3 + (2 * 2) * 1
    assert fields["4"].size == (9, 9) and fields["4"].jump == (2, 2)
    assert fields["5"].size == (13, 13) and fields["5"].jump == (4, 4)
    assert fields["6"].size == (29, 29) and fields["6"].jump == (4, 4)
    assert fields["8"] is None


def test_a_layer_type_it_cannot_account_for_is_named():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Upsample(scale_factor=2), nn.Flatten(), nn.Linear(2 * 52 * 52, 10))
    with pytest.raises(FashionClfError, match="layer '1' of type Upsample cannot be analysed"):
        analyze_model(model, (1, 28, 28), batch_sizes=(1,), repeats=1)


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_can_be_analysed(name):
    spec = quick_spec(name)
    result = analyze_model(create_model(name, spec), spec.input_size, batch_sizes=(2,), repeats=1)
    assert result["total"]["params"] == sum(p.numel() for p in create_model(name, spec).parameters())
    assert sum(row["flop_share"] for row in result["layers"]) == pytest.approx(1.0)


class ShortcutModel(nn.Module):
    """A residual addition whose shortcut is a 1x1 strided conv: the sum sees the union of both paths' fields."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.main = nn.Sequential(nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 5, padding=2))
        self.shortcut = nn.Conv2d(4, 4, 1, stride=2)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 14 * 14, 10))

    def forward(self, x):
        x = self.stem(x)
        return self.head(self.main(x) + self.shortcut(x))


def test_a_residual_addition_sees_the_union_of_its_paths():
    fields = receptive_fields(ShortcutModel(), (1, 28, 28))
    assert fields["shortcut"] == fields["stem"].__class__((3, 3), (2, 2), (0.0, 0.0))
    assert fields["main.2"].size == (13, 13) and fields["main.2"].jump == (2, 2)  # 3 + 2 + 4 * 2
    assert fields["add"] == fields["main.2"]  # the shortcut's 3x3 lies inside the main path's 13x13


def test_the_residual_addition_is_counted_and_timed():
    result = analyze_model(ShortcutModel(), (1, 28, 28), batch_sizes=(2,), repeats=1)
    add = next(row for row in result["layers"] if row["type"] == "add")
    assert add["elementwise_flops"] == 4 * 14 * 14
    assert add["time"]["batch_2"]["forward_median_us"] > 0


def test_a_function_it_cannot_account_for_is_named():
    class Doubling(nn.Module):
        def forward(self, x):
            return torch.cat([x, x], dim=1)

    with pytest.raises(FashionClfError, match="layer 'cat' .*cannot be analysed"):
        analyze_model(Doubling(), (1, 28, 28), batch_sizes=(1,), repeats=1)


@pytest.mark.parametrize("name", list_models())
def test_every_registered_models_flops_agree_with_pytorchs_counter(name):
    spec = quick_spec(name)
    model = create_model(name, spec)
    with FlopCounterMode(display=False) as counter:
        model(example_input(spec))
    result = analyze_model(model, spec.input_size, batch_sizes=(1,), repeats=1)
    assert result["total"]["flops"] == counter.get_total_flops()


def test_adding_maps_of_different_strides_is_refused():
    class Mismatched(nn.Module):
        def __init__(self):
            super().__init__()
            self.strided = nn.Conv2d(1, 2, 3, stride=2, padding=1)  # 14x14, units 2 pixels apart
            self.wide = nn.Conv2d(1, 2, 15)  # 14x14, units 1 pixel apart

        def forward(self, x):
            return self.strided(x) + self.wide(x)

    with pytest.raises(FashionClfError, match="adds maps whose units lie at different strides"):
        receptive_fields(Mismatched(), (1, 28, 28))


def test_a_runs_replaced_data_is_refused_before_any_timing_unless_allowed(tmp_path, monkeypatch):
    import fashionclf.analysis as analysis

    run, csv = csv_run(tmp_path)
    recorded = file_sha256(csv)
    write_csv(csv, synthetic_split(200, seed=7))
    timed = analysis.analyze_model

    def no_timing(*args, **kwargs):
        raise AssertionError("timed before the data was checked")

    monkeypatch.setattr(analysis, "analyze_model", no_timing)
    with pytest.raises(FashionClfError, match=r"\(data.csv has SHA-256 .*; pass --allow-changed-data to analyze it"):
        analyze(run.root, batch_size=8, repeats=2)
    monkeypatch.setattr(analysis, "analyze_model", timed)
    with pytest.warns(FashionClfWarning, match="analyze goes on"):
        result = analyze(run.root, batch_size=8, repeats=2, allow_changed_data=True)
    saved = json.loads(run.analysis.read_text())
    assert saved["data_changed"] is True and saved["data_changes"]["data.csv"]["recorded"] == recorded
    assert result == saved
