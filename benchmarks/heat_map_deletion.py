"""Which attribution locates a Fashion-MNIST model's evidence best: deletion and insertion (Petsiuk et al., 2018).

    .venv/bin/python benchmarks/heat_map_deletion.py runs/fast [--images 100] [--layers layer2,layer2.2,layer1]

For the first `--images` test images and the class the run's model predicts, each attribution orders the pixels,
hottest first. Deletion blacks them out in that order, insertion puts them back onto black, in 28 steps; the
predicted class's probability averaged along the way (the area under the curve) is lower for a better deletion
order and higher for a better insertion order. A random order is the floor; Grad-CAM is tried on each of `--layers`;
the last row is what `fashionclf.explain` draws. Results: docs/photos.md#heat-maps-where-the-evidence-lies.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Occlusion, Saliency

from fashionclf import data as fmnist
from fashionclf.explain import load_explainer

Attribution = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # images, targets -> (N, H, W)


def curves(model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor, heat: torch.Tensor, steps: int = 28):
    """(deletion, insertion) areas under the predicted class's probability."""
    count, height, width = heat.shape
    order = heat.reshape(count, -1).argsort(1, descending=True)
    deletion, insertion = [], []
    for shown in np.linspace(0, height * width, steps + 1).astype(int):
        mask = torch.zeros(count, height * width).scatter_(1, order[:, :shown], 1.0).reshape(count, 1, height, width)
        with torch.no_grad():
            deletion.append(F.softmax(model(images * (1 - mask)), 1)[torch.arange(count), targets].mean().item())
            insertion.append(F.softmax(model(images * mask), 1)[torch.arange(count), targets].mean().item())
    return np.trapezoid(deletion, dx=1 / steps), np.trapezoid(insertion, dx=1 / steps)


def attributions(model: torch.nn.Module, layers: list[str]) -> dict[str, Attribution]:
    def grad_cam(layer: torch.nn.Module) -> Attribution:
        def attribute(images, targets):
            maps = LayerGradCam(model, layer).attribute(images, target=targets, relu_attributions=True)
            return LayerAttribution.interpolate(maps, tuple(images.shape[-2:]), "bilinear")[:, 0]

        return attribute

    def occlusion(window: int, stride: int) -> Attribution:
        def attribute(images, targets):
            shape, step = (1, window, window), (1, stride, stride)
            occluded = Occlusion(model).attribute(
                images, target=targets, sliding_window_shapes=shape, strides=step, perturbations_per_eval=200
            )
            return occluded[:, 0]

        return attribute

    return {
        "a random order": lambda images, _: torch.rand(len(images), *images.shape[-2:]),
        **{f"Grad-CAM {name}": grad_cam(model.get_submodule(name)) for name in layers},
        "saliency": lambda images, targets: Saliency(model).attribute(images, target=targets)[:, 0],
        "integrated gradients, 32 steps": lambda images, targets: IntegratedGradients(model).attribute(
            images, target=targets, n_steps=32, internal_batch_size=256
        )[:, 0],
        "occlusion 7x7, stride 3": occlusion(7, 3),
        "occlusion 4x4, stride 2": occlusion(4, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--layers", default="layer2,layer2.2,layer1", help="Grad-CAM's layers, by module name")
    args = parser.parse_args()
    torch.manual_seed(0)
    explainer = load_explainer(args.run)
    model = explainer.model
    test = fmnist.load_fashion_mnist().test
    images = test.images[: args.images].float() / 255
    with torch.no_grad():
        targets = model(images).argmax(1)
    methods = attributions(model, args.layers.split(","))
    methods[f"fashionclf.explain ({explainer.method})"] = lambda images, targets: torch.from_numpy(
        explainer.heat_maps((images * 255).round().byte().numpy(), targets[:, None].numpy())[:, 0]
    )
    print(f"{args.run}: the first {len(images)} test images, the predicted class\n")
    print("| attribution | deletion (lower is better) | insertion (higher is better) | seconds an image |")
    print("|---|---:|---:|---:|")
    for name, attribute in methods.items():
        start = time.perf_counter()
        heat = attribute(images, targets).detach()
        seconds = (time.perf_counter() - start) / len(images)
        deletion, insertion = curves(model, images, targets, heat)
        print(f"| {name} | {deletion:.3f} | {insertion:.3f} | {seconds:.4f} |", flush=True)


if __name__ == "__main__":
    main()
