"""`fashionclf export`: a run as a folder others can pick up, and that folder opened again by predict and serve.

    OUT/
      model.safetensors   the fp32 weights, a plain state dict (safetensors loads without executing anything)
      config.json         the model's name and arguments, its spec (classes, input), the preprocessing and the
                          normalisation in words, and the SHA-256 of every model file
      model.onnx          fp32, with a dynamic batch axis (input "images", output "logits")
      model-int8.onnx     the run's int8 model (quantize's best_int8), where one agrees with fp32
      README.md           the model card: the metadata block the Hugging Face Hub reads, and the run's own numbers

The folder is built in a temporary folder beside OUT and renamed into place, so OUT is whole or absent. Opening it
checks every model file against its recorded SHA-256 and the weights against the model the config describes, so a
changed file or a config of another model is one error line, never a wrong answer.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import warnings
from pathlib import Path

import torch
from torch import nn

from fashionclf.backends import Dispatch, Runner, dispatch
from fashionclf.checkpoint import build_model, load_model, recorded_spec
from fashionclf.errors import FashionClfError, FashionClfWarning
from fashionclf.files import atomic_write, file_sha256, writing
from fashionclf.models import ModelSpec
from fashionclf.rundir import RunDir, open_run, quantization_is_current, read_json, write_json, write_text

EXPORT_FORMAT = "fashionclf-export"
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
ONNX = "model.onnx"
INT8_ONNX = "model-int8.onnx"
CARD = "README.md"

# How each preprocessing brings a picture to the model's input (what predict and serve do before the model).
PREPROCESSING_STEPS = {
    "fashion-mnist": "grayscale; a light background inverted to dark and the background level subtracted; cropped to "
    "the garment, padded to a square and resized to 28x28, as Fashion-MNIST frames its garments (a 28x28 picture "
    "on a dark background passes unchanged)",
    "garment": "the garment separated from a cluttered background first (OpenCV's GrabCut from the picture's centre), "
    "then framed as the fashion-mnist preprocessing frames it",
    "photo": "RGB, transparency composited on white; the longer side scaled to the input size (box filter when "
    "shrinking, bicubic when enlarging), the shorter side padded equally on both sides by repeating its edge pixels",
}
NORMALISATION = (
    "uint8 pixels divided by 255 into float32 in [0, 1], NCHW; any further scaling is inside the model (the "
    "pretrained photo models scale to (255 x - 127) / 128 in their first layer)"
)


def export_run(run_dir: Path, out: Path, licence: str = "unknown") -> Path:
    """Write the run's best model into the folder `out` (refused where it exists and is not empty): weights, ONNX,
    the int8 model where the run has one, config.json and the model card. Returns `out`."""
    run, out = open_run(run_dir), Path(out)
    _refuse_existing(out)
    with writing(out):
        out.parent.mkdir(parents=True, exist_ok=True)
        scratch = _new_folder_beside(out)
        try:
            _write_folder(scratch, run, licence, out.name)
            _refuse_existing(out)  # another export may have finished meanwhile
            os.rename(scratch, out)  # replaces an empty folder, never a full one
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
    return out


def _refuse_existing(out: Path) -> None:
    if out.is_file() or out.is_symlink():
        raise FashionClfError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        raise FashionClfError(f"{out}: exists and is not empty; give a new folder")


def _new_folder_beside(out: Path) -> Path:
    """An empty folder beside `out`, made as mkdir makes folders (mode 0777 less the umask), so the renamed folder is
    as readable as the user's others; tempfile.mkdtemp would make it private."""
    while True:
        scratch = out.with_name(f".{out.name}.{secrets.token_hex(4)}.tmp")
        try:
            scratch.mkdir()
            return scratch
        except FileExistsError:
            continue


def _write_folder(folder: Path, run: RunDir, licence: str, name: str) -> None:
    # Imported here: predict and serve import this module to open a folder, and need neither.
    from fashionclf.card import model_card
    from fashionclf.quantize import export_onnx

    model, checkpoint = load_model(run.best_checkpoint)
    spec = recorded_spec(checkpoint)
    save_weights(model, folder / WEIGHTS)
    export_onnx(model, checkpoint["model"], spec, "fp32", folder / ONNX)
    int8 = current_int8(run)
    if int8 is not None:
        shutil.copyfile(run.root / int8["path"], folder / INT8_ONNX)
    config = export_config(checkpoint, spec, folder, run, int8)
    write_json(folder / CONFIG, config)
    write_text(folder / CARD, model_card(run, config, licence, name))


def save_weights(model: nn.Module, target: Path) -> None:
    from safetensors.torch import save

    state = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
    content = save(state, metadata={"format": "pt"})  # bytes: save_file would make the file private (0600)
    atomic_write(target, lambda tmp: tmp.write_bytes(content))


def current_int8(run: RunDir) -> dict | None:
    """The run's int8 ONNX model that inference would use (quantize's best_int8), with its measured accuracy and
    agreement with fp32; None where the run has none, or where its quantized files predate best.pt. The ONNX file
    rather than the compiled .pt2 because the .pt2 runs only on CPUs of the kind it was compiled on, and the ONNX
    file everywhere, with the same answers on every x86 CPU (quantize's 7-bit weights)."""
    if not run.quantization.is_file():
        return None
    quantization = read_json(run.quantization)
    method = quantization.get("best_int8")
    if method is None:
        return None
    if not quantization_is_current(run, quantization):
        stale = f"{run.root}: the quantized models were made from an earlier checkpoints/best.pt"
        warnings.warn(f"{stale}; exporting fp32 alone (run fashionclf quantize {run.root} first for int8)",
                      FashionClfWarning, 2)  # fmt: skip
        return None
    entry = quantization["methods"][method]
    onnx = next((file["path"] for file in entry["files"].values() if file["path"].endswith(".onnx")), None)
    if onnx is None:
        return None
    return {"method": method, "path": onnx, "accuracy": entry["accuracy"],
            "agreement": entry["agreement"], "evaluated_on": quantization["evaluated_on"],
            "trained_on": quantization.get("trained_on", False)}  # fmt: skip


def export_config(checkpoint: dict, spec: ModelSpec, folder: Path, run: RunDir, int8: dict | None) -> dict:
    """config.json: what a program needs to rebuild, feed and check the model, and where it came from."""
    files = {WEIGHTS: "fp32 weights", ONNX: "fp32 ONNX"}
    if int8 is not None:
        files[INT8_ONNX] = f"int8 ONNX ({int8['method']})"
    return {
        "format": EXPORT_FORMAT,
        "model": checkpoint["model"],
        "model_args": checkpoint["model_args"],
        "spec": spec.as_dict(),
        "classes": list(spec.classes),
        "input": {
            "name": "images",
            "dtype": "float32",
            "shape": ["batch", *spec.input_size],
            "range": [0.0, 1.0],
            "colour": "grayscale" if spec.input.channels == 1 else "RGB",
        },
        "output": {"name": "logits", "shape": ["batch", len(spec.classes)], "probabilities": "softmax of the logits"},
        "preprocessing": {"name": spec.input.preprocessing, "steps": PREPROCESSING_STEPS[spec.input.preprocessing]},
        "normalisation": NORMALISATION,
        "files": {
            name: {"what": what, "sha256": file_sha256(folder / name), "bytes": (folder / name).stat().st_size}
            for name, what in files.items()
        },
        "int8": int8,
        "source": {
            "run": run.root.name,
            "checkpoint_epoch": checkpoint.get("epoch"),
            "checkpoint_sha256": file_sha256(run.best_checkpoint),
        },
    }


def is_export(path: Path) -> bool:
    """Whether `path` is a folder `export` wrote (or one that means to be: it has the weights file or the format tag),
    as opposed to a run directory."""
    path = Path(path)
    if not path.is_dir() or (path / WEIGHTS).exists():
        return path.is_dir()
    try:
        return json.loads((path / CONFIG).read_text(encoding="utf-8")).get("format") == EXPORT_FORMAT
    except (OSError, ValueError, AttributeError):
        return False  # no config, or not one of ours: the run directory's checks say what is wrong


def open_export(folder: Path, precision: str) -> Dispatch:
    """The exported model on the files and backends measured fastest here, as for a run directory: the fp32 weights
    (eager) and model.onnx, and the int8 model where the folder has one (auto: all; fp32; int8). Every file is
    checked against its recorded SHA-256 and the weights against the config's model first."""
    folder = Path(folder)
    config = read_export_config(folder)
    _check_files(folder, config)
    spec = _spec(config, folder)
    eager = Runner("eager", folder / WEIGHTS, config["model"], "fp32", load_weights(folder, config, spec), spec)
    int8 = [INT8_ONNX] if INT8_ONNX in config["files"] else []
    if precision == "int8" and not int8:
        raise FashionClfError(f"{folder}: has no int8 model (the run had none that agrees with fp32 when exported)")
    names = {"fp32": [ONNX], "int8": int8, "auto": [ONNX, *int8]}[precision]
    files = [(folder / name, backend) for name in names for backend in ("onnxruntime", "openvino")]
    chosen = dispatch(files, opened=() if precision == "int8" else (eager,))
    for runner in (chosen.small, chosen.large):
        if runner.spec != spec:
            raise FashionClfError(f"{runner.path}: its classes and input are not those {folder / CONFIG} records")
    return chosen


def read_export_config(folder: Path) -> dict:
    config = read_json(folder / CONFIG)
    if not isinstance(config, dict) or config.get("format") != EXPORT_FORMAT:
        raise FashionClfError(f"{folder / CONFIG}: not an exported model's config (no {EXPORT_FORMAT!r} format tag)")
    missing = [key for key in ("model", "model_args", "spec", "files") if key not in config]
    if missing:
        raise FashionClfError(f"{folder / CONFIG}: lacks {', '.join(missing)}")
    if WEIGHTS not in config["files"]:
        raise FashionClfError(f"{folder / CONFIG}: records no SHA-256 for {WEIGHTS}")
    return config


def _check_files(folder: Path, config: dict) -> None:
    for name, recorded in config["files"].items():
        path = folder / name
        if Path(name).name != name or not path.is_file():
            raise FashionClfError(f"{path}: missing (config.json lists it)")
        if file_sha256(path) != recorded.get("sha256"):
            raise FashionClfError(f"{path}: its SHA-256 is not the one config.json records: changed or damaged")


def _spec(config: dict, folder: Path) -> ModelSpec:
    try:
        return ModelSpec.from_dict(config["spec"])
    except (KeyError, TypeError, ValueError) as exc:
        raise FashionClfError(f"{folder / CONFIG}: its spec is not a model spec ({exc})") from None


def load_weights(folder: Path, config: dict, spec: ModelSpec) -> nn.Module:
    """The config's model with the folder's weights, in eval mode; weights that do not fit it (missing or extra
    tensors, other shapes, another class count) are one error line."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = folder / WEIGHTS
    try:
        weights = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise FashionClfError(f"{path}: not a readable safetensors file ({exc})") from None
    model = build_model({**config, "spec": spec.as_dict()})
    problem = _misfit(model.state_dict(), weights)
    if problem:
        raise FashionClfError(
            f"{path}: does not fit {CONFIG}'s model {config['model']!r} with {len(spec.classes)} classes ({problem})"
        )
    model.load_state_dict(weights)
    return model.eval()


def _misfit(expected: dict[str, torch.Tensor], weights: dict[str, torch.Tensor]) -> str | None:
    missing = [name for name in expected if name not in weights]
    extra = [name for name in weights if name not in expected]
    if missing:
        return f"lacks {_some(missing)}"
    if extra:
        return f"has tensors the model lacks: {_some(extra)}"
    for name, tensor in expected.items():  # in the model's order, so a layer's weight is named before its bias
        if weights[name].shape != tensor.shape:
            return f"{name} is {tuple(weights[name].shape)} in the file, {tuple(tensor.shape)} in the model"
    return None


def _some(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
