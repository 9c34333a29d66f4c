"""Classifying pictures from a run directory or a model file: folders, bad files, int8, and agreement with the model."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fashionclf.bench import bench_run
from fashionclf.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from fashionclf.config import TrainConfig
from fashionclf.errors import FashionClfError, FashionClfWarning
from fashionclf.inference import Prediction, load_classifier, predict_files
from fashionclf.models import create_model
from fashionclf.preprocess import image_files
from fashionclf.train import train

from pictures import bad_inputs, encode, garment_on_white
from synthetic import band_photos


@pytest.fixture
def untrained_model(tmp_path) -> Path:
    path = tmp_path / "model.pt"
    torch.manual_seed(0)
    model = create_model("fashion_cnn").eval()
    save_checkpoint(path, {"format": CHECKPOINT_FORMAT, "model": "fashion_cnn", "model_args": {},
                           "state_dict": model.state_dict()})  # fmt: skip
    return path


def fashionclf(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fashionclf", *args], capture_output=True, text=True, timeout=120)


def test_a_folder_run_classifies_the_good_files_and_lists_the_bad(tmp_path, untrained_model):
    folder = tmp_path / "pictures"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.jpg").write_bytes(encode(garment_on_white(), "JPEG"))
    (folder / "sub" / "b.webp").write_bytes(encode(garment_on_white(), "WEBP"))
    for name, (content, _) in bad_inputs().items():
        (folder / name).write_bytes(content)
    os.mkfifo(folder / "pipe.png")
    os.mkfifo(tmp_path / "fifo.png")  # given by name, it was opened, and predict waited for a writer forever
    (folder / "gone.png").symlink_to(tmp_path / "deleted.png")
    result = fashionclf("predict", str(untrained_model), str(folder), str(tmp_path / "fifo.png"), "--json",
                        "--top-k", "2", "--save-input", str(tmp_path / "seen"))  # fmt: skip
    assert result.returncode == 2
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(Path(line["file"]).name for line in lines) == ["a.jpg", "b.webp"]
    assert all(len(line["top_k"]) == 2 and line["top_k"][0]["probability"] >= line["top_k"][1]["probability"]
               for line in lines)  # fmt: skip
    errors = result.stderr.strip().splitlines()
    assert len(errors) == len(bad_inputs()) + 3 and "Traceback" not in result.stderr
    assert f"fashionclf: error: {tmp_path / 'fifo.png'}: not a regular file (a FIFO)" in errors
    assert f"fashionclf: error: {folder / 'pipe.png'}: not a regular file (a FIFO)" in errors
    assert f"fashionclf: error: {folder / 'gone.png'}: broken symbolic link (to {tmp_path / 'deleted.png'})" in errors
    assert sorted(p.name for p in (tmp_path / "seen").iterdir()) == ["a.png", "b.png"]
    assert Image.open(tmp_path / "seen" / "a.png").size == (28, 28)


@pytest.fixture
def three_pictures(tmp_path) -> Path:
    folder = tmp_path / "pictures"
    folder.mkdir()
    for name in ("a", "b", "c"):
        (folder / f"{name}.png").write_bytes(encode(garment_on_white(), "PNG"))
    return folder


# The disk fills up after the first picture's model input; a real full disk needs a file system of its own.
FULL_AFTER_ONE = """
import errno, os, sys
from PIL import Image

def save(self, *args, saved=[], real=Image.Image.save, **kwargs):
    if saved:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    saved.append(real(self, *args, **kwargs))

Image.Image.save = save
from fashionclf.cli import main
main()
"""


def test_a_disk_filling_up_under_save_input_stops_predict_with_what_was_done_kept_and_said(
    tmp_path, untrained_model, three_pictures
):
    seen = tmp_path / "seen"
    result = subprocess.run([sys.executable, "-c", FULL_AFTER_ONE, "predict", str(untrained_model),
                             str(three_pictures), "--save-input", str(seen)],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    printed = [line.split(": ")[0] for line in result.stdout.splitlines()]
    assert printed == [str(three_pictures / "a.png"), str(three_pictures / "b.png")]
    assert result.stderr == (
        f"fashionclf: error: {seen / 'b.png'}: cannot write (no space left on the device); predict stopped after 2 "
        "of 3 pictures\n"
    )
    assert [p.name for p in seen.iterdir()] == ["a.png"]  # kept, and no half-written file beside it


def test_save_input_onto_a_file_is_one_line(tmp_path, untrained_model, three_pictures):
    (tmp_path / "seen").write_text("a file")
    result = fashionclf("predict", str(untrained_model), str(three_pictures), "--save-input", str(tmp_path / "seen"))
    assert result.returncode == 2 and len(result.stdout.splitlines()) == 1
    assert result.stderr == (
        f"fashionclf: error: {tmp_path / 'seen'}: cannot write (exists and is not a folder); predict stopped after 1 "
        "of 3 pictures\n"
    )


def test_a_reader_that_stops_reading_stops_predict_with_one_line(untrained_model, three_pictures):
    """As `fashionclf predict ... --json | head -1` does once it has its line; the reader here stops before any."""
    reader, writer = os.pipe()
    os.close(reader)  # before predict starts: its first line finds the pipe broken, whatever the timing
    command = [sys.executable, "-m", "fashionclf", "predict", str(untrained_model), str(three_pictures), "--json"]
    result = subprocess.run(command, stdout=writer, stderr=subprocess.PIPE, text=True, timeout=120)
    os.close(writer)
    assert result.returncode == 2
    assert result.stderr == (
        "fashionclf: error: stdout: cannot write (broken pipe: the program reading it stopped); predict stopped "
        "after 0 of 3 pictures\n"
    )


def test_a_file_name_with_a_newline_stays_on_its_line(tmp_path, untrained_model):
    """A newline in a file name split predict's line in two; JSON output escapes it already."""
    folder = tmp_path / "pictures"
    folder.mkdir()
    (folder / "two\nlines.png").write_bytes(encode(garment_on_white(), "PNG"))
    (folder / "red\x1b[31m.png").write_bytes(b"not a picture")
    result = fashionclf("predict", str(untrained_model), str(folder))
    assert result.returncode == 2
    (line,) = result.stdout.splitlines()
    assert line.startswith(f"{folder}/two\\nlines.png: ")
    assert result.stderr == f"fashionclf: error: {folder}/red\\x1b[31m.png: not an image (no format Pillow reads)\n"


def test_predict_refuses_a_missing_model(tmp_path):
    result = fashionclf("predict", str(tmp_path / "nope"), str(tmp_path))
    assert result.returncode == 2
    assert (
        result.stderr.strip() == f"fashionclf: error: {tmp_path / 'nope'}: model does not exist (give a run "
        "directory, an export or a model file)"
    )


@pytest.mark.real_data
def test_pictures_written_from_the_test_set_get_the_models_label(trained_run, real_data, tmp_path):
    """1,000 test images as PNG, as they are and as 280x280 dark-on-white, agree with the model's own answer."""
    classifier = load_classifier(trained_run.root)
    images = real_data.test.images[:1000].numpy()
    expected = classifier.probabilities(images).argmax(axis=1)
    as_is, photo_like = tmp_path / "as-is", tmp_path / "photo-like"
    as_is.mkdir()
    photo_like.mkdir()
    for i, pixels in enumerate(images):
        image = Image.fromarray(pixels[0])
        image.save(as_is / f"{i:04d}.png")
        Image.fromarray(255 - np.asarray(image.resize((280, 280), Image.Resampling.NEAREST))).save(
            photo_like / f"{i:04d}.png"
        )
    for folder in (as_is, photo_like):
        files, _ = image_files([folder])
        results = list(predict_files(classifier, files, k=1))
        assert all(isinstance(r, Prediction) for r in results)
        got = np.array([r.top[0]["index"] for r in results])
        assert (got == expected).mean() >= 0.99, folder.name


def test_a_quantized_run_serves_the_faster_of_fp32_and_int8_unless_told(quantized_run, trained_run, real_data):
    best_int8 = json.loads(quantized_run.quantization.read_text())["best_int8"]
    auto, int8 = load_classifier(quantized_run.root), load_classifier(quantized_run.root, precision="int8")
    fp32 = load_classifier(quantized_run.root, precision="fp32")
    served = {auto.logits_of.small.method, auto.logits_of.large.method}
    assert served <= {"fp32", best_int8}
    assert {int8.logits_of.small.method, int8.logits_of.large.method} == {best_int8}
    assert {fp32.logits_of.small.method, fp32.logits_of.large.method} == {"fp32"}
    images = real_data.test.images[:2000].numpy()
    for classifier in (auto, int8):
        agreement = (classifier.probabilities(images).argmax(1) == fp32.probabilities(images).argmax(1)).mean()
        assert agreement >= 0.99
    with pytest.raises(FashionClfError, match="no int8 model yet; run fashionclf quantize"):
        load_classifier(trained_run.root, precision="int8")


# What `fashionclf bench` measured on two CPUs, (precision, backend) -> (batch-1 median us, batch-256 images/s): the
# AVX2-only Zen 1 of tests/data/avx2-2core/bench.json and the AMX Xeon of docs/RESULTS.md (Inductor's package takes
# whole batches of 256, so one image costs a batch there).
RECORDED = {
    "avx2": {
        ("fp32", "eager"): (1159, 2844), ("fp32", "onnxruntime"): (326, 7716), ("fp32", "openvino"): (1135, 7179),
        ("int8", "inductor"): (51032, 5020), ("int8", "onnxruntime"): (289, 6413), ("int8", "openvino"): (1174, 5323),
    },
    "amx": {
        ("fp32", "eager"): (447, 5149), ("fp32", "onnxruntime"): (173, 29790), ("fp32", "openvino"): (449, 79888),
        ("int8", "inductor"): (2791, 91706), ("int8", "onnxruntime"): (84, 30335), ("int8", "openvino"): (336, 86492),
    },
}  # fmt: skip


@pytest.mark.parametrize(
    ("cpu", "single", "batches"),
    [
        ("avx2", ("int8", "onnxruntime"), ("fp32", "onnxruntime")),
        ("amx", ("int8", "onnxruntime"), ("int8", "inductor")),
    ],
)
def test_predict_and_serve_choose_as_the_recorded_timings_say(quantized_run, monkeypatch, cpu, single, batches):
    """On the AVX2-only CPU int8 loses in batches, and fp32 serves them; on the AMX one int8 serves everything."""
    from fashionclf import backends

    def recorded(runner, images, calls):
        single_us, images_per_s = RECORDED[cpu]["fp32" if runner.method == "fp32" else "int8", runner.backend]
        return [single_us * 1e-6 if len(images) == 1 else len(images) / images_per_s] * calls

    monkeypatch.setattr(backends, "latencies", recorded)
    chosen = load_classifier(quantized_run.root).logits_of
    as_chosen = {"single": chosen.small, "batches": chosen.large}
    for regime, (precision, backend) in (("single", single), ("batches", batches)):
        runner = as_chosen[regime]
        assert (("fp32" if runner.method == "fp32" else "int8"), runner.backend) == (precision, backend), regime


def test_a_model_file_is_used_as_it_is(quantized_run):
    classifier = load_classifier(quantized_run.quantized / "static.onnx")
    assert classifier.description.startswith("fashion_cnn static on onnxruntime")


def test_int8_models_of_an_earlier_best_pt_are_not_served(quantized_run, tmp_path):
    """Training on (--resume) can replace best.pt after quantize: its int8 files then describe other weights."""
    run = tmp_path / "retrained"
    shutil.copytree(quantized_run.root, run)
    checkpoint = load_checkpoint(run / "checkpoints" / "best.pt")
    checkpoint["state_dict"]["fc3.bias"] += 1.0
    save_checkpoint(run / "checkpoints" / "best.pt", checkpoint)
    with pytest.warns(FashionClfWarning, match="made from an earlier checkpoints/best.pt; serving fp32 until"):
        classifier = load_classifier(run)
    assert "fp32" in classifier.description and "best.pt" in classifier.description
    with pytest.raises(FashionClfError, match="earlier checkpoints/best.pt; run fashionclf quantize"):
        load_classifier(run, precision="int8")
    with pytest.raises(FashionClfError, match="earlier checkpoints/best.pt; run fashionclf quantize .* again"):
        bench_run(run)


def test_predict_answers_in_the_class_names_of_the_run(tmp_path):
    band_photos(tmp_path / "photos")
    run = train(TrainConfig(epochs=2, batch_size=50, device="cpu", data=str(tmp_path / "photos")), tmp_path / "run",
                progress=False)  # fmt: skip
    picture = next((tmp_path / "photos" / "validation" / "shoes").iterdir())
    result = fashionclf("predict", str(run.root), str(picture), "--json", "--top-k", "3")
    assert result.returncode == 0, result.stderr
    top = json.loads(result.stdout)["top_k"]
    assert sorted(t["class"] for t in top) == ["hat", "shoes", "skirt"]


def coloured_share(path: Path) -> float:
    """The share of a figure's pixels in colour: the pictures under the heat maps here are grey."""
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return float((np.ptp(pixels, axis=2) > 40).mean())


def test_predict_explain_writes_heat_maps_beside_the_input_the_model_saw(trained_run, tmp_path):
    picture, seen = tmp_path / "shirt.jpg", tmp_path / "seen"
    picture.write_bytes(encode(garment_on_white(), "JPEG"))
    result = fashionclf(
        "predict", str(trained_run.root), str(picture), "--save-input", str(seen), "--explain", str(seen)
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in seen.iterdir()) == ["shirt-heat-picture.png", "shirt-heat.png", "shirt.png"]
    assert coloured_share(seen / "shirt-heat.png") > 0.01 and coloured_share(seen / "shirt-heat-picture.png") > 0.01
    plain = fashionclf("predict", str(trained_run.root), str(picture), "--save-input", str(tmp_path / "plain"))
    assert plain.stdout == result.stdout  # the same answer, heat maps or not
