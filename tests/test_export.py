"""Exported folders: they predict what their run predicts, their model card holds the run's own numbers, and a
changed or mismatched folder is refused in one line."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from fastapi.testclient import TestClient
from PIL import Image

from fashionclf import card
from fashionclf.backends import open_runner
from fashionclf.config import TrainConfig
from fashionclf.errors import FashionClfError
from fashionclf.evaluate import evaluate_run
from fashionclf.export import export_run, load_weights, save_weights
from fashionclf.files import file_sha256
from fashionclf.inference import load_classifier, predict_files
from fashionclf.models import create_model, list_models
from fashionclf.serve import create_app
from fashionclf.train import train

from pictures import SAMPLE
from synthetic import quick_spec


def fashionclf(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fashionclf", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd)  # fmt: skip


@pytest.fixture(scope="module")
def test_pictures(real_data, tmp_path_factory) -> list[Path]:
    """Three Fashion-MNIST test images as PNG files: already in the model's input form, so every reader sees them
    alike."""
    folder = tmp_path_factory.mktemp("pictures")
    paths = [folder / f"test{i}.png" for i in range(3)]
    for i, path in enumerate(paths):
        Image.fromarray(real_data.test.images[i, 0].numpy()).save(path)
    return paths


@pytest.fixture(scope="module")
def evaluated_run(trained_run, tmp_path_factory) -> Path:
    """A copy of the short run, evaluated on its test split and on photos through a class map."""
    run = tmp_path_factory.mktemp("runs") / "evaluated"
    shutil.copytree(trained_run.root, run)
    shutil.rmtree(run / "evaluations", ignore_errors=True)
    evaluate_run(run)
    evaluate_run(run, data_path=SAMPLE, split="all", class_map="clothing-small")
    return run


@pytest.fixture(scope="module")
def exported(evaluated_run, tmp_path_factory) -> Path:
    """The evaluated run exported by the command line."""
    out = tmp_path_factory.mktemp("exports") / "fashion-model"
    result = fashionclf("export", str(evaluated_run), str(out), "--license", "mit")
    assert result.returncode == 0, result.stderr
    return out


def probabilities_of(model: Path, pictures: list[Path], precision: str) -> np.ndarray:
    """Each picture's probabilities, in class order."""
    predictions = predict_files(load_classifier(model, precision), pictures, k=10)
    return np.array([[t["probability"] for t in sorted(p.top, key=lambda t: t["index"])] for p in predictions])


def test_predict_on_an_export_gives_its_runs_answer(evaluated_run, exported, test_pictures):
    assert sorted(p.name for p in exported.iterdir()) == ["README.md", "config.json", "model.onnx", "model.safetensors"]
    result = fashionclf("predict", str(exported), *map(str, test_pictures), "--json", "--top-k", "10")
    assert result.returncode == 0, result.stderr
    answers = [json.loads(line)["top_k"] for line in result.stdout.splitlines()]
    from_export = np.array([[t["probability"] for t in sorted(top, key=lambda t: t["index"])] for top in answers])
    from_run = probabilities_of(evaluated_run, test_pictures, "fp32")
    assert (from_export.argmax(1) == from_run.argmax(1)).all()
    np.testing.assert_allclose(from_export, from_run, atol=1e-5)


def test_the_onnx_runtime_snippet_of_the_card_works_as_written(exported, test_pictures):
    snippet = _onnx_snippet(exported / "README.md").replace("picture.png", str(test_pictures[0]))
    result = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, cwd=exported.parent)
    assert result.returncode == 0, result.stderr
    printed = [line.rsplit(" ", 1) for line in result.stdout.splitlines()]
    (prediction,) = predict_files(load_classifier(exported, "fp32"), test_pictures[:1], k=3)
    assert [name for name, _ in printed] == [t["class"] for t in prediction.top]
    assert [float(p) for _, p in printed] == pytest.approx([t["probability"] for t in prediction.top], abs=1e-4)


def _onnx_snippet(readme: Path) -> str:
    text = readme.read_text()
    return re.search(r"### With ONNX Runtime alone.*?```python\n(.*?)```", text, re.S).group(1)


def test_the_model_card_holds_the_runs_own_numbers(evaluated_run, exported):
    text = (exported / "README.md").read_text()
    metadata = yaml.safe_load(text.split("---\n")[1])
    metrics = json.loads((evaluated_run / "metrics.json").read_text())
    photos = json.loads(next((evaluated_run / "evaluations").glob("*/metrics.json")).read_text())
    assert metadata["license"] == "mit" and metadata["pipeline_tag"] == "image-classification"
    assert metadata["datasets"] == ["zalando-datasets/fashion_mnist"] and "fashion_cnn" in metadata["tags"]
    results = metadata["model-index"][0]["results"]
    assert [r["metrics"][0]["value"] for r in results] == [round(metrics["accuracy"], 4), round(photos["accuracy"], 4)]
    assert results[0]["dataset"]["split"] == "test"
    assert f"accuracy **{metrics['accuracy']:.2%}**" in text
    for row in metrics["per_class"]:
        assert f"| {row['class']} | {row['accuracy']:.2%} | {row['precision']:.3f} |" in text
    matrix = np.array(metrics["confusion_matrix"])
    np.fill_diagonal(matrix, 0)
    true, predicted = np.unravel_index(matrix.argmax(), matrix.shape)
    classes = [row["class"] for row in metrics["per_class"]]
    assert f"| {classes[true]} | {classes[predicted]} | {matrix.max():,} |" in text.split("Most confused")[1]
    assert f"| `clothing-small-sample` | all | fashion-mnist | yes | {photos['images']} | {photos['accuracy']:.2%} |" \
        in text  # fmt: skip
    config = json.loads((evaluated_run / "config.json").read_text())
    assert f"| train | {config['data']['splits']['train']['images']:,} |" in text
    assert "Not evaluated" not in text


def test_an_unevaluated_run_gets_a_card_that_claims_no_accuracy(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run.root, run)
    (run / "metrics.json").unlink(missing_ok=True)
    shutil.rmtree(run / "evaluations", ignore_errors=True)
    text = (export_run(run, tmp_path / "out") / "README.md").read_text()
    assert "Not evaluated" in text and "model-index" not in text and "accuracy **" not in text


def test_a_quantized_run_exports_the_int8_model_inference_uses(quantized_run, tmp_path, test_pictures):
    quantization = json.loads(quantized_run.quantization.read_text())
    method = quantization["best_int8"]
    assert method is not None  # the fixture's static int8 agrees with fp32
    out = export_run(quantized_run.root, tmp_path / "out")
    run_file = quantized_run.root / quantization["methods"][method]["files"]["onnxruntime"]["path"]
    assert (out / "model-int8.onnx").read_bytes() == run_file.read_bytes()
    config = json.loads((out / "config.json").read_text())
    assert config["int8"]["method"] == method and f"`{method}` int8 model" in (out / "README.md").read_text()
    classifier = load_classifier(out, "int8")
    assert "model-int8.onnx" in classifier.description
    inputs = np.stack([classifier.spec.input.prepare(Image.open(p)) for p in test_pictures])
    with torch.inference_mode():
        expected = torch.softmax(open_runner(run_file)(torch.from_numpy(inputs).float() / 255), 1).numpy()
    np.testing.assert_allclose(classifier.probabilities(inputs), expected, atol=1e-3)


def test_an_existing_folder_is_refused_and_a_failed_export_leaves_nothing(trained_run, tmp_path, monkeypatch):
    full = tmp_path / "full"
    full.mkdir()
    (full / "mine.txt").write_text("keep")
    with pytest.raises(FashionClfError, match=f"^{full}: exists and is not empty"):
        export_run(trained_run.root, full)
    assert [p.name for p in full.iterdir()] == ["mine.txt"]
    monkeypatch.setattr(card, "model_card", lambda *args: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        export_run(trained_run.root, tmp_path / "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]  # no half folder, no temporary one


@pytest.fixture
def copy_of_export(exported, tmp_path) -> Path:
    folder = tmp_path / "copy"
    shutil.copytree(exported, folder)
    return folder


@pytest.mark.parametrize("name", ["model.safetensors", "model.onnx"])
def test_a_file_with_one_byte_changed_is_refused_in_one_line(copy_of_export, test_pictures, name):
    path = copy_of_export / name
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 1
    path.write_bytes(bytes(content))
    result = fashionclf("predict", str(copy_of_export), str(test_pictures[0]))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == f"fashionclf: error: {path}: its SHA-256 is not the one config.json records: changed or " \
        "damaged\n"  # fmt: skip


def _edit_config(folder: Path, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | changes))


def test_a_config_of_another_class_count_is_refused_in_one_line(copy_of_export, test_pictures):
    config = json.loads((copy_of_export / "config.json").read_text())
    _edit_config(copy_of_export, spec=config["spec"] | {"classes": config["spec"]["classes"][:9]})
    result = fashionclf("serve", str(copy_of_export), "--port", "0")
    assert result.returncode == 2 and "serving" not in result.stdout
    assert result.stderr == (
        f"fashionclf: error: {copy_of_export / 'model.safetensors'}: does not fit config.json's model 'fashion_cnn' "
        "with 9 classes (fc3.weight is (10, 120) in the file, (9, 120) in the model)\n"
    )


def test_weights_of_another_model_or_with_tensors_added_are_refused(copy_of_export):
    _edit_config(copy_of_export, model="resnet9")
    with pytest.raises(FashionClfError, match=r"does not fit config.json's model 'resnet9' .*\(lacks prep\.0\.weight"):
        load_classifier(copy_of_export)
    _edit_config(copy_of_export, model="fashion_cnn")
    from safetensors.torch import load_file, save_file

    weights = copy_of_export / "model.safetensors"
    save_file(load_file(str(weights)) | {"extra.weight": torch.zeros(2)}, str(weights))
    config = json.loads((copy_of_export / "config.json").read_text())
    config["files"]["model.safetensors"]["sha256"] = file_sha256(weights)
    (copy_of_export / "config.json").write_text(json.dumps(config))
    with pytest.raises(FashionClfError, match="has tensors the model lacks: extra.weight"):
        load_classifier(copy_of_export)


def test_a_folder_without_its_weights_or_format_tag_is_refused(copy_of_export):
    (copy_of_export / "model.safetensors").unlink()
    with pytest.raises(FashionClfError, match=r"model.safetensors: missing \(config.json lists it\)"):
        load_classifier(copy_of_export)
    _edit_config(copy_of_export, format="something-else")
    with pytest.raises(FashionClfError, match=r"checkpoints/best.pt: model file does not exist"):  # read as a run
        load_classifier(copy_of_export)


@pytest.mark.parametrize("name", list_models())
def test_every_registered_models_weights_travel_through_safetensors(name, tmp_path):
    spec = quick_spec(name, ("a", "b", "c"))
    torch.manual_seed(0)
    model = create_model(name, spec).eval()
    save_weights(model, tmp_path / "model.safetensors")
    loaded = load_weights(tmp_path, {"model": name, "model_args": {}}, spec)
    images = torch.rand(2, *spec.input_size)
    with torch.inference_mode():
        assert torch.equal(loaded(images), model(images))


@pytest.fixture(scope="module")
def photo_run(tmp_path_factory):
    """The photo model, small and briefly trained on the committed sample of clothing-dataset-small (as
    test_photos.py trains it)."""
    config = TrainConfig(model="photo_resnet9", model_args={"width": 8, "flip_average": True}, image_size=32,
                         epochs=2, batch_size=8, optimizer="sgd", lr=0.05, schedule="onecycle", device="cpu",
                         data=str(SAMPLE))  # fmt: skip
    return train(config, tmp_path_factory.mktemp("runs") / "photos", progress=False)


def test_a_photo_model_exports_predicts_serves_and_runs_in_the_snippet(photo_run, tmp_path):
    evaluate_run(photo_run.root)
    out = export_run(photo_run.root, tmp_path / "photo-model")
    photo = next((SAMPLE / "validation" / "hat").iterdir())
    from_export = probabilities_of(out, [photo], "fp32")
    np.testing.assert_allclose(from_export, probabilities_of(photo_run.root, [photo], "fp32"), atol=1e-5)
    text = (out / "README.md").read_text()
    assert "validation split" in text and "somewhat optimistic" in text and "datasets:" not in text
    assert json.loads((out / "config.json").read_text())["model_args"] == {"width": 8, "flip_average": True}
    client = TestClient(create_app(load_classifier(out)))
    answer = client.post("/predict", files=[("files", (photo.name, photo.read_bytes()))]).json()
    assert answer["predictions"][0]["top_k"][0]["class"] in json.loads((out / "config.json").read_text())["classes"]
    snippet = _onnx_snippet(out / "README.md").replace("picture.png", str(photo))
    result = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    printed = [float(line.rsplit(" ", 1)[1]) for line in result.stdout.splitlines()]
    assert printed == pytest.approx(sorted(from_export[0], reverse=True)[:3], abs=1e-4)
