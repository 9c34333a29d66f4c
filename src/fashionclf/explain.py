"""Heat maps: which regions of a picture drove each of a model's top classes, computed with captum.

Two attributions, by the model's input, chosen by measurement and cost (docs/photos.md, "Heat maps"):
- Fashion-MNIST's 28x28 inputs: occlusion (Zeiler and Fergus, 2014). Each OCCLUSION_WINDOW-pixel square, moved
  OCCLUSION_STRIDE pixels at a time, is blacked out (Fashion-MNIST's background) and the class's logit is measured;
  a pixel's heat is how much the class lost, on average, when it was covered. By deletion and insertion (Petsiuk et
  al., 2018) on the test set it locates the evidence far better than Grad-CAM, whose last feature maps here are
  6x6 or 3x3, and it costs one batch of 169 small inputs a class.
- Photos: Grad-CAM (Selvaraju et al., 2017) on the model's last feature map, as its authors chose it
  (`feature_layer`; a model may name its own in `explained_layer`): one forward and backward pass a class,
  where occlusion or integrated gradients would take a hundred or dozens of passes of a network that takes a
  large fraction of a second for one. Each class's map is carried back to the input's pixels through whatever
  the model does to its input before its first convolution (the photo models' mirror images, crops and resized
  views): upsampled to that convolution's input, then projected by the adjoint of those steps, which autograd
  computes, so the views a model averages over are folded back where they came from.
A heat map is scaled to a maximum of 1 and drawn over the model's input and, through the preprocessing's `Frame`,
over the user's picture.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image
from torch import nn

from fashionclf import plots
from fashionclf.checkpoint import load_checkpoint, model_from_checkpoint, recorded_spec
from fashionclf.errors import FashionClfError
from fashionclf.models import ModelSpec
from fashionclf.networks import example_input
from fashionclf.preprocess import Frame, on_white, open_image, to_picture
from fashionclf.rundir import RunDir

OCCLUSION_WINDOW, OCCLUSION_STRIDE = 4, 2
OCCLUSION_BATCH = 4096  # occluded inputs a model call, at most
COLOURS = colormaps["turbo"]
OPACITY = 0.6  # of the hottest region; a cold region is transparent
PAGE_SIDE = 96  # the largest heat map the page is sent: the maps are smooth, so a larger one would show nothing more
DRAWN_SIDE = 224  # pixels a side of a model input drawn in a figure, at least


def drawing_scale(side: int) -> int:
    """How many times a model input is enlarged in figures: a 28x28 one 8 times, a photo model's not at all."""
    return max(1, DRAWN_SIDE // side)


@dataclass(frozen=True)
class Explainer:
    """A PyTorch model in eval mode, its spec, and the layer whose Grad-CAM it shows (None: occlusion is shown)."""

    model: nn.Module
    spec: ModelSpec
    layer: nn.Module | None

    @property
    def method(self) -> str:
        return "occlusion" if self.layer is None else "Grad-CAM"

    def heat_maps(self, images: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """float32 (N, k, H, W) in [0, 1]: for uint8 model inputs (N, C, H, W) and class indices (N, k), where in
        each input the evidence for each class lies."""
        count, k = classes.shape
        inputs = torch.from_numpy(images.astype(np.float32) / 255).repeat_interleave(k, dim=0)
        targets = torch.from_numpy(classes).reshape(-1).long()
        if self.layer is None:
            maps = _occlusion(self.model, inputs, targets)
        else:
            maps = _grad_cam(self.model, self.layer, inputs, targets)
        maps = maps.clamp_min(0)  # evidence for the class; what speaks against it is not shown
        maps = maps / maps.amax((1, 2), keepdim=True).clamp_min(1e-12)
        return maps.reshape(count, k, *maps.shape[-2:]).numpy()

    def write_heat_maps(self, name: str, top: list[dict], folder: Path) -> tuple[Path, Path]:
        """For the picture file `name` and its top classes (as `inference.top_k` gives them), write STEM-heat.png
        (each class's heat map over the model's input) and STEM-heat-picture.png (over the picture) into
        `folder`."""
        picture = open_image(Path(name), name)
        model_input, frame = self.spec.input.prepare_framed(picture)
        heats = self.heat_maps(model_input[None], np.array([[t["index"] for t in top]]))[0]
        captions = [f"{t['class']} {t['probability']:.1%}" for t in top]
        stem = Path(name).stem
        on_input, on_picture = Path(folder) / f"{stem}-heat.png", Path(folder) / f"{stem}-heat-picture.png"
        scale = drawing_scale(model_input.shape[-1])
        plots.picture_grid([[over_model_input(model_input, heat, scale) for heat in heats]], [captions], on_input)
        plots.picture_grid([[over_picture(picture, heat, frame) for heat in heats]], [captions], on_picture)
        return on_input, on_picture


def explainer_for(model: nn.Module, spec: ModelSpec) -> Explainer:
    model.eval()
    return Explainer(model, spec, None if spec.input.domain == "fashion-mnist" else feature_layer(model, spec))


def load_explainer(path: Path, spec: ModelSpec | None = None) -> Explainer:
    """The fp32 PyTorch model of a run directory (its best.pt) or of a checkpoint file: heat maps are computed on
    it, whatever file serves the predictions (their top classes are the same: quantize keeps an int8 model only
    where it agrees with fp32). `spec` replaces the checkpoint's (another preprocessing)."""
    path = Path(path)
    if not path.is_dir() and path.suffix != ".pt":
        raise FashionClfError(f"{path}: heat maps need the PyTorch model; give the run directory or its .pt file")
    checkpoint_path = RunDir(path).best_checkpoint if path.is_dir() else path
    if path.is_dir() and not checkpoint_path.is_file():  # an exported folder, say: it holds no checkpoint
        raise FashionClfError(f"{path}: heat maps need the run's checkpoints/best.pt, which this folder lacks")
    checkpoint = load_checkpoint(checkpoint_path)
    if "quantization" in checkpoint:
        raise FashionClfError(f"{path}: heat maps need the fp32 model, not an int8 one; give the run directory")
    return explainer_for(model_from_checkpoint(checkpoint, checkpoint_path), spec or recorded_spec(checkpoint))


def feature_layer(model: nn.Module, spec: ModelSpec) -> nn.Module:
    """The model's `explained_layer` (a submodule's name) where it declares one, else the module that last outputs a
    feature map (N, C, h, w) of more than one position a side, found by running an example input."""
    if name := getattr(model, "explained_layer", None):
        return model.get_submodule(name)
    finished: list[nn.Module] = []

    def record(module: nn.Module, _inputs, output) -> None:
        if isinstance(output, torch.Tensor) and output.dim() == 4 and min(output.shape[-2:]) > 1:
            finished.append(module)

    handles = [module.register_forward_hook(record) for module in model.modules() if module is not model]
    try:
        with torch.no_grad():
            model.eval()(example_input(spec))
    finally:
        for handle in handles:
            handle.remove()
    if not finished:
        raise FashionClfError(f"{type(model).__name__}: no feature map larger than 1x1 to draw heat maps from")
    return finished[-1]


# captum is imported in the functions that use it: it takes seconds to import, which predict and serve pay only
# when asked for heat maps.


def _occlusion(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(N, H, W): how much each target's logit drops, on average, when a window over each pixel is blacked out."""
    from captum.attr import Occlusion

    channels = inputs.shape[1]
    with torch.no_grad():
        maps = Occlusion(model).attribute(
            inputs, target=targets, baselines=0.0, perturbations_per_eval=max(1, OCCLUSION_BATCH // len(inputs)),
            sliding_window_shapes=(channels, OCCLUSION_WINDOW, OCCLUSION_WINDOW),
            strides=(channels, OCCLUSION_STRIDE, OCCLUSION_STRIDE),
        )  # fmt: skip
    return maps.sum(1)


def _grad_cam(model: nn.Module, layer: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(N, H, W) Grad-CAM maps, carried back to the input's pixels."""
    from captum.attr import LayerAttribution, LayerGradCam

    inputs = inputs.clone().requires_grad_(True)
    entered: list[torch.Tensor] = []  # what the first convolution read: the input, or views made of it

    def record(_module: nn.Module, args: tuple) -> None:
        if not entered:
            entered.append(args[0])

    convolutions = [module for module in model.modules() if isinstance(module, nn.Conv2d)]
    handles = [module.register_forward_pre_hook(record) for module in convolutions]
    try:
        with torch.enable_grad():
            cams = LayerGradCam(model, layer).attribute(inputs, target=targets, relu_attributions=True)
            views = entered[0]
            upsampled = LayerAttribution.interpolate(cams.detach(), tuple(views.shape[-2:]), "bilinear")
            (projected,) = torch.autograd.grad((views * upsampled).sum(), inputs)
    finally:
        for handle in handles:
            handle.remove()
    return projected.sum(1)


def coloured(heat: np.ndarray) -> Image.Image:
    """An RGBA picture of a heat map in [0, 1]: hot regions coloured and opaque, cold ones transparent."""
    rgba = COLOURS(heat)
    rgba[..., 3] = OPACITY * heat
    return Image.fromarray(np.round(rgba * 255).astype(np.uint8), "RGBA")


def over(background: Image.Image, heat: np.ndarray) -> Image.Image:
    """The heat map drawn over a picture of the same size."""
    return Image.alpha_composite(background.convert("RGBA"), coloured(heat)).convert("RGB")


def over_model_input(model_input: np.ndarray, heat: np.ndarray, scale: int = 1) -> Image.Image:
    """The heat map over the uint8 model input (C, H, W), both enlarged `scale` times."""
    side = model_input.shape[-1] * scale
    background = to_picture(model_input).convert("RGB").resize((side, side), Image.Resampling.NEAREST)
    return over(background, _resized(heat, side))


def over_picture(picture: Image.Image, heat: np.ndarray, frame: Frame) -> Image.Image:
    """The heat map over the user's (decoded) picture, placed on the square of it that the model input shows."""
    canvas = Image.new("F", picture.size, 0.0)
    side = max(1, round(frame.side))
    canvas.paste(Image.fromarray(_resized(heat, side)), (round(frame.left), round(frame.top)))
    return over(on_white(picture), np.clip(np.asarray(canvas), 0, 1))


def _resized(heat: np.ndarray, side: int) -> np.ndarray:
    return np.asarray(Image.fromarray(heat.astype(np.float32)).resize((side, side), Image.Resampling.BILINEAR))


def placement(frame: Frame, size: tuple[int, int]) -> dict[str, float]:
    """Where the model input's square lies on a picture of `size` (width, height), in fractions of its width and
    height: what the page needs to draw a heat map over the picture as the browser shows it."""
    width, height = size
    return {"left": frame.left / width, "top": frame.top / height,
            "width": frame.side / width, "height": frame.side / height}  # fmt: skip


def page_png(heat: np.ndarray) -> bytes:
    """The coloured heat map as an RGBA PNG, at most PAGE_SIDE pixels a side (the browser enlarges it smoothly)."""
    side = min(PAGE_SIDE, heat.shape[-1])
    buffer = io.BytesIO()
    coloured(_resized(heat, side)).save(buffer, format="PNG")
    return buffer.getvalue()


def confused_pairs(confusion: np.ndarray | list[list[int]], count: int) -> list[tuple[int, int, int]]:
    """(true class, predicted class, images) of the `count` largest off-diagonal counts of a confusion matrix."""
    matrix = np.array(confusion)
    np.fill_diagonal(matrix, 0)
    order = np.argsort(-matrix, axis=None, kind="stable")[:count]
    pairs = [(int(t), int(p), int(matrix[t, p])) for t, p in zip(*np.unravel_index(order, matrix.shape), strict=True)]
    return [pair for pair in pairs if pair[2] > 0]


CONFUSED_PAIRS, IMAGES_PER_PAIR = 3, 3


def confusion_figure(
    explainer: Explainer, images: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, path: Path
) -> bool:
    """For the commonest confusions (a true class read as another), the most confident such mistakes among uint8
    `images`, each with the heat map of the class it was given and of its true class, written to `path`. False,
    and nothing written, when the model made no mistake."""
    classes = explainer.spec.classes
    predicted = probabilities.argmax(1)
    confusion = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    rows, captions = [], []
    for true, wrong, _ in confused_pairs(confusion, CONFUSED_PAIRS):
        mistakes = np.flatnonzero((labels == true) & (predicted == wrong))
        chosen = mistakes[np.argsort(-probabilities[mistakes, wrong], kind="stable")][:IMAGES_PER_PAIR]
        targets = np.stack([np.full(len(chosen), wrong), np.full(len(chosen), true)], axis=1)
        heats = explainer.heat_maps(images[chosen], targets)
        scale = drawing_scale(images.shape[-1])
        rows.append(
            [over_model_input(images[i], heat, scale) for i, pair in zip(chosen, heats, strict=True) for heat in pair]
        )
        captions.append([text for i in chosen for text in (
            f"{classes[true]} as {classes[wrong]} {probabilities[i, wrong]:.0%}\nfor {classes[wrong]}",
            f"\nfor {classes[true]}")])  # fmt: skip
    if not rows:
        Path(path).unlink(missing_ok=True)  # an earlier evaluation's figure would show mistakes no longer made
        return False
    plots.picture_grid(rows, captions, path, title=f"Heat maps ({explainer.method}) of the commonest confusions")
    return True
