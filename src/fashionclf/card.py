"""The model card of an exported run: README.md with the metadata block the Hugging Face Hub reads, and, in words,
what the model is for, what it was trained on and how, and how well it does, every number from the run's own files.

A run that was never evaluated (or was evaluated on an earlier best.pt) gets a card that says so and claims no
accuracy: evaluating belongs to `fashionclf evaluate`, which export does not run behind the user's back.
"""

from __future__ import annotations

import json
from pathlib import Path

from fashionclf import explain
from fashionclf.catalog import SETS
from fashionclf.models import ModelEntry, model_entry
from fashionclf.report import measured_on_training_data, training_recipe
from fashionclf.rundir import RunDir, read_json

FASHION_MNIST_HUB_ID = "zalando-datasets/fashion_mnist"
FASHION_MNIST_SOURCE = "Fashion-MNIST (Zalando Research, MIT licence): 28x28 grayscale catalogue images of garments"
CONFUSED_PAIRS = 5
TAGS = ("image-classification", "clothing", "fashionclf", "safetensors", "onnx")


def model_card(run: RunDir, config: dict, licence: str, name: str) -> str:
    """README.md for the exported folder `name`, from the run and the export's config.json."""
    run_config = read_json(run.config)
    metrics = current_metrics(run, config["source"]["checkpoint_epoch"])
    photos = photo_evaluations(run)
    sections = [
        front_matter(run, run_config, metrics, photos, licence, config["model"]),
        summary(run, run_config, config, metrics),
        intended_use(config),
        input_section(config),
        data_section(run_config),
        recipe_section(run_config, config),
        evaluation_section(metrics, epoch_chosen=bool(run_config["train"]["validation_size"])),
        photos_section(photos),
        int8_section(config.get("int8")),
        limitations(config, metrics, photos),
        usage(config, name),
    ]
    return "\n\n".join(section.strip() for section in sections if section) + "\n"


def current_metrics(run: RunDir, epoch: int | None) -> dict | None:
    """The run's evaluation of the exported checkpoint: None where there is none, or where it was of another epoch's
    weights (training went on with --resume after evaluate)."""
    if not run.metrics.is_file():
        return None
    metrics = read_json(run.metrics)
    return metrics if metrics.get("checkpoint", {}).get("epoch") == epoch else None


def photo_evaluations(run: RunDir) -> list[dict]:
    """What `evaluate --data` measured on other data (RUN/evaluations/*/metrics.json), in name order."""
    folder = run.evaluations
    return [read_json(path) for path in sorted(folder.glob("*/metrics.json"))] if folder.is_dir() else []


def data_name(data: dict) -> str:
    """The training data's name: Fashion-MNIST for its IDX files, a named photo set, or the folder or file's name."""
    if data["origin"] not in ("csv", "photos"):
        return "Fashion-MNIST"
    return Path(data["directory"]).name


def _data_source(data: dict) -> str:
    if data["origin"] not in ("csv", "photos"):
        return FASHION_MNIST_SOURCE
    known = next((s.source for s in SETS.values() if s.folder == Path(data["directory"]).name), None)
    kind = "A CSV file in Fashion-MNIST's Kaggle format" if data["origin"] == "csv" else "A folder of photos by class"
    return f"{kind}, `{Path(data['directory']).name}`" + (f" ({known})" if known else "")


def front_matter(run, run_config: dict, metrics, photos: list[dict], licence: str, model: str) -> str:
    """The YAML block the Hub reads: licence, library, task, tags, datasets, and the run's numbers as model-index
    results (values written as JSON, which YAML reads as it is)."""
    data = run_config["data"]
    is_fashion_mnist = data_name(data) == "Fashion-MNIST"
    lines = [
        "---",
        f"license: {json.dumps(licence)}",
        "library_name: fashionclf",
        "pipeline_tag: image-classification",
        "tags:",
        *[f"- {json.dumps(tag)}" for tag in (*TAGS, model, *(["fashion-mnist"] if is_fashion_mnist else []))],
        *(["datasets:", f"- {FASHION_MNIST_HUB_ID}"] if is_fashion_mnist else []),
        "metrics:",
        "- accuracy",
    ]
    own = [_result(metrics, data_name(data))] if metrics and not measured_on_training_data(metrics) else []
    results = own + [_result(m, Path(m["data"]["path"]).name) for m in photos if not measured_on_training_data(m)]
    if results:
        lines += ["model-index:", f"- name: {json.dumps(run.root.name)}", "  results:", *results]
    return "\n".join([*lines, "---"])


def _result(metrics: dict, dataset: str) -> str:
    split = metrics["data"]["split"]
    hub_type = FASHION_MNIST_HUB_ID if dataset == "Fashion-MNIST" else dataset
    mapped = " through a class map" if "class_map" in metrics else ""
    return "\n".join([
        "  - task:",
        "      type: image-classification",
        "    dataset:",
        f"      name: {json.dumps(dataset)}",
        f"      type: {json.dumps(hub_type)}",
        f"      split: {json.dumps(split)}",
        "    metrics:",
        "    - type: accuracy",
        f"      value: {round(metrics['accuracy'], 4)}",
        f"      name: {json.dumps(f'{split} accuracy{mapped}')}",
    ])  # fmt: skip


def summary(run: RunDir, run_config: dict, config: dict, metrics: dict | None) -> str:
    entry = model_entry(config["model"])
    classes = config["classes"]
    if not metrics:
        measured = " Not evaluated (see below)."
    else:
        seen = "it trained on (see below)" if measured_on_training_data(metrics) else "it never trained on"
        measured = (f" {metrics['data']['split'].capitalize()} accuracy **{metrics['accuracy']:.2%}** on "
                    f"{metrics['images']:,} images {seen}.")  # fmt: skip
    return (
        f"# {config['model']}: {len(classes)} clothing classes ({run.root.name})\n\n"
        f"`{entry.name}`: {_described(entry)} It tells {', '.join(classes)} apart in "
        f"{_input_words(config)} pictures, trained by fashionclf on "
        f"{data_name(run_config['data'])}.{measured}"
    )


def _described(entry: ModelEntry) -> str:
    """The model's docstring's first paragraph, whole (the registry's description is its first line only)."""
    paragraph = " ".join((entry.build.__doc__ or entry.description).strip().split("\n\n")[0].split())
    return paragraph if paragraph.endswith(".") else f"{paragraph}."


def _input_words(config: dict) -> str:
    spec = config["spec"]
    return f"{spec['size']}x{spec['size']} {config['input']['colour']}"


def intended_use(config: dict) -> str:
    domain = (
        "photos of a single garment, such as shop or phone photos,"
        if config["spec"]["preprocessing"] == "photo"
        else "pictures of a single garment in Fashion-MNIST's style: one garment, centred, on a plain background "
        "(fashionclf's preprocessing inverts light backgrounds and frames the garment as Fashion-MNIST does),"
    )
    return (
        "## Intended use\n\n"
        f"Sorting {domain} into the classes above: a baseline, a teaching example, or a first pass that a person "
        'checks. Every picture gets one of these classes, garment or not; there is no "none of these". Not for '
        "decisions about people."
    )


def input_section(config: dict) -> str:
    files = "\n".join(f"| `{name}` | {entry['what']} | {entry['bytes']:,} | `{entry['sha256']}` |"
                      for name, entry in config["files"].items())  # fmt: skip
    return (
        "## Input, output and files\n\n"
        f"| | |\n|---|---|\n"
        f"| input `images` | float32 (batch, {', '.join(map(str, config['input']['shape'][1:]))}), "
        f"{config['input']['colour']}, in [0, 1] |\n"
        f"| preprocessing `{config['preprocessing']['name']}` | {config['preprocessing']['steps']} |\n"
        f"| normalisation | {config['normalisation']} |\n"
        f"| output `logits` | float32 (batch, {len(config['classes'])}); probabilities are their softmax |\n"
        f"| classes, in output order | {', '.join(f'{i} {c}' for i, c in enumerate(config['classes']))} |\n\n"
        "| file | what | bytes | SHA-256 |\n|---|---|---:|---|\n" + files
    )


def data_section(run_config: dict) -> str:
    data = run_config["data"]
    rows = "\n".join(f"| {split} | {entry['images']:,} | {entry['from']} |" for split, entry in data["splits"].items())
    return (
        "## Training data\n\n"
        f"{_data_source(data)}. No image is in more than one split:\n\n"
        f"| split | images | from |\n|---|---:|---|\n{rows}"
    )


def recipe_section(run_config: dict, config: dict) -> str:
    train = run_config["train"]
    args = ", ".join(f"{key}={value}" for key, value in config["model_args"].items()) or "its defaults"
    validation = "validation" if "validation" in run_config["data"]["splits"] else "training"
    chosen = f"the one with the best {validation} accuracy" if train["validation_size"] else "the last"
    return (
        "## Training recipe\n\n"
        f"Model `{config['model']}` with {args}. {training_recipe(train)} The exported weights are epoch "
        f"{config['source']['checkpoint_epoch']}'s, {chosen}, from run "
        f"`{config['source']['run']}` (its best.pt's SHA-256 `{config['source']['checkpoint_sha256'][:16]}...`)."
    )


def evaluation_section(metrics: dict | None, epoch_chosen: bool) -> str:
    if metrics is None:
        return (
            "## Evaluation\n\n"
            "Not evaluated: the run had no evaluation of these weights when it was exported, so this card claims no "
            "accuracy. Run `fashionclf evaluate RUN` and export again for the numbers."
        )
    split, caveat = metrics["data"]["split"], ""
    if measured_on_training_data(metrics):
        caveat = (" The model trained on these images (`--final`, or a training split named): the figures measure "
                  "what it learnt, not how it does on images it never saw.")  # fmt: skip
    elif split == "validation":
        chose = (
            ", and the validation split also chose the epoch, so they are somewhat optimistic" if epoch_chosen else ""
        )
        caveat = f" The data has no test split: these are validation figures{chose}."
    rows = "\n".join(
        f"| {r['class']} | {r['accuracy']:.2%} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | "
        f"{r['support']:,} |"
        for r in metrics["per_class"]
    )
    return (
        "## Evaluation\n\n"
        f"On all {metrics['images']:,} images of the {split} split ({metrics['data']['from']}): accuracy "
        f"**{metrics['accuracy']:.2%}**, top-2 accuracy {metrics['top2_accuracy']:.2%}, loss {metrics['loss']:.4f}."
        f"{caveat}\n\n"
        "| class | accuracy | precision | recall | F1 | images |\n|---|---:|---:|---:|---:|---:|\n"
        f"{rows}\n\n### Most confused classes\n\n{confused_pairs_table(metrics)}"
    )


def confused_pairs(metrics: dict, count: int = CONFUSED_PAIRS) -> list[tuple[str, str, int, float]]:
    """The largest off-diagonal cells of the confusion matrix: (true class, predicted class, images, share of the
    true class's images)."""
    classes = [row["class"] for row in metrics["per_class"]]
    matrix = metrics["confusion_matrix"]
    return [
        (classes[true], classes[predicted], images, images / sum(matrix[true]))
        for true, predicted, images in explain.confused_pairs(matrix, count)
    ]


def confused_pairs_table(metrics: dict) -> str:
    pairs = confused_pairs(metrics)
    if not pairs:
        return "No image was misclassified."
    rows = "\n".join(f"| {true} | {predicted} | {images:,} | {share:.1%} |" for true, predicted, images, share in pairs)
    return "| true class | predicted as | images | of the true class |\n|---|---|---:|---:|\n" + rows


def photos_section(photos: list[dict]) -> str | None:
    if not photos:
        return None
    rows = "\n".join(
        f"| `{Path(m['data']['path']).name}` | {m['data']['split']}"
        f"{' (trained on)' if measured_on_training_data(m) else ''} | {m['data']['preprocessing']} | "
        f"{'yes' if 'class_map' in m else 'no'} | {m['images']:,} | {m['accuracy']:.2%} |"
        for m in photos
    )
    return (
        "## On other data\n\n"
        "Measured with `fashionclf evaluate RUN --data ...` (a class map judges data whose classes are not the "
        "model's: a prediction counts as right when the map allows it):\n\n"
        "| data | split | preprocessing | class map | images | accuracy |\n|---|---|---|---|---:|---:|\n" + rows
    )


def int8_section(int8: dict | None) -> str | None:
    if int8 is None:
        return None
    trained = " (which it trained on)" if int8.get("trained_on") else ""
    return (
        "## int8\n\n"
        f"`model-int8.onnx` is the run's `{int8['method']}` int8 model (fashionclf quantize): accuracy "
        f"{int8['accuracy']:.2%} on the {int8['evaluated_on']} split{trained}, the same top class as fp32 on "
        f"{int8['agreement']:.2%} of its images, on ONNX Runtime and OpenVINO alike. `fashionclf predict` times it "
        "against fp32 on the machine in use and runs the faster."
    )


def limitations(config: dict, metrics: dict | None, photos: list[dict]) -> str:
    points = ["Every picture gets one of its classes, whether it shows a garment or not."]
    if config["spec"]["preprocessing"] == "photo":
        points.append("Trained on a small set of photos: expect lower accuracy on photos unlike them (other "
                      "backgrounds, several garments in one photo, people wearing them).")  # fmt: skip
    else:
        measured = "; see the table above" if photos else "; not measured for this run"
        points.append("Fashion-MNIST's images are catalogue shots of one light garment centred on black; real photos "
                      f"(clutter, shadows, several garments) are harder{measured}.")  # fmt: skip
    if metrics is not None:
        worst = min(metrics["per_class"], key=lambda row: row["accuracy"])
        points.append(f"The hardest class is {worst['class']} ({worst['accuracy']:.2%} of its images right).")
    return "## Limitations\n\n" + "\n".join(f"- {point}" for point in points)


def usage(config: dict, name: str) -> str:
    return (
        "## How to use\n\n"
        "With fashionclf (it checks every file's SHA-256 and that the weights fit the config before loading):\n\n"
        "```bash\n"
        f"fashionclf predict {name} picture.jpg     # the top 3 classes\n"
        f"fashionclf serve {name}                   # an upload page at http://127.0.0.1:8000/\n"
        "```\n\n"
        "```python\nfrom pathlib import Path\n\nfrom fashionclf.inference import load_classifier, predict_files\n\n"
        f'classifier = load_classifier(Path("{name}"))\n'
        'for prediction in predict_files(classifier, [Path("picture.jpg")]):\n    print(prediction.top)\n```\n\n'
        "### With ONNX Runtime alone\n\n"
        f"{_onnx_note(config)}\n\n```python\n{onnx_snippet(config, name)}```"
    )


def _onnx_note(config: dict) -> str:
    if config["spec"]["preprocessing"] == "photo":
        return (
            "This fits a photo into the model's square as fashionclf does (fashionclf also applies EXIF orientation "
            "and decodes photos larger than 512 px at a reduced scale first):"
        )
    return (
        "This takes a picture already in Fashion-MNIST's form, a 28x28 grayscale garment light on black; "
        "`fashionclf predict --save-input DIR` writes any photo in that form:"
    )


def onnx_snippet(config: dict, name: str) -> str:
    """A program that classifies picture.png with onnxruntime, NumPy and Pillow alone."""
    if config["spec"]["preprocessing"] == "photo":
        picture = (
            'picture = Image.open("picture.png").convert("RGB")\n'
            'size = config["spec"]["size"]\n'
            "scale = size / max(picture.size)\n"
            "width, height = max(1, round(picture.width * scale)), max(1, round(picture.height * scale))\n"
            "resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BICUBIC\n"
            "picture = picture.resize((width, height), resample)\n"
            "top, left = (size - height) // 2, (size - width) // 2\n"
            "padding = ((top, size - height - top), (left, size - width - left), (0, 0))\n"
            'pixels = np.pad(np.asarray(picture), padding, mode="edge").transpose(2, 0, 1)\n'
        )
    else:
        picture = 'pixels = np.asarray(Image.open("picture.png").convert("L").resize((28, 28)))[None]\n'
    return (
        "import json\n\nimport numpy as np\nimport onnxruntime as ort\nfrom PIL import Image\n\n"
        f'folder = "{name}"\n'
        'config = json.load(open(f"{folder}/config.json"))\n'
        'session = ort.InferenceSession(f"{folder}/model.onnx", providers=["CPUExecutionProvider"])\n'
        f"{picture}"
        "images = pixels[None].astype(np.float32) / 255  # (1, channels, size, size) in [0, 1]\n"
        'logits = session.run(None, {"images": images})[0][0]\n'
        "probabilities = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()\n"
        "for index in probabilities.argsort()[::-1][:3]:\n"
        '    print(config["classes"][index], round(float(probabilities[index]), 4))\n'
    )
