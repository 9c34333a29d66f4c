import re
import shutil
from dataclasses import asdict
from pathlib import Path

import pytest
from test_serve import CHROMIUM, CHROMIUM_ARGS

from fashionclf.analysis import analyze
from fashionclf.config import TrainConfig
from fashionclf.evaluate import evaluate_run
from fashionclf.explain import confused_pairs
from fashionclf.report import _heaviest_and_slowest, build_report, title, training_recipe
from fashionclf.rundir import RunDir, read_json, write_json
from fashionclf.train import train

from synthetic import band_photos, csv_run


def row(name: str, flop_share: float, time_share: float) -> dict:
    return {
        "name": name,
        "flop_share": flop_share,
        "arithmetic_intensity": 1.0,
        "time": {"batch_256": {"forward_time_share": time_share}},
    }


def test_the_analysis_sentence_contrasts_the_heaviest_and_slowest_layers():
    conv, pool = row("conv", 0.6, 0.15), row("pool", 0.003, 0.4)
    sentence = _heaviest_and_slowest(conv, pool, "batch_256")
    assert (
        "`conv` (60% of FLOPs" in sentence and "yet the slowest at batch 256 is `pool` (40% of forward time" in sentence
    )


def test_the_analysis_sentence_says_when_one_layer_is_both():
    conv = row("conv", 0.6, 0.5)
    assert "is also the slowest" in _heaviest_and_slowest(conv, conv, "batch_256")


def test_the_report_says_when_its_metrics_were_measured_on_changed_data(tmp_path):
    run, _ = csv_run(tmp_path)
    metrics = {"accuracy": 0.5, "loss": 1.0, "images": 40, "data": {"split": "test"}, "data_changed": False}
    write_json(run.metrics, metrics)
    assert "changed" not in title(run)
    changes = {"data.csv": {"recorded": "a" * 64, "found": "b" * 64}}
    write_json(run.metrics, {**metrics, "data_changed": True, "data_changes": changes})
    assert "**The data changed since training** (`data.csv`): these metrics were measured with" in title(run)


def test_the_report_states_the_recipe_the_run_recorded():
    seed = TrainConfig.from_recipe("seed", seed=3)
    assert training_recipe(asdict(seed)) == (
        "Recipe `seed`: Adam, learning rate 0.001 (constant), batch 100, 5 epochs, seed 3; channels-last layout, "
        "bf16 autocast (weights and optimizer in float32)."
    )
    best = training_recipe(asdict(TrainConfig.from_recipe("best", bf16=False)))
    assert best.startswith("Recipe `best`: AdamW, learning rate 0.002 (one-cycle), weight decay 0.01, batch 128, 48")
    assert (
        "seed 0, a moving average of the weights (decay 0.999) as the model; random crops after 2-pixel padding, "
        "horizontal flips; channels-last layout" in best
    )
    assert best.endswith("float32 arithmetic.")
    assert "SGD with Nesterov momentum 0.9" in training_recipe(asdict(TrainConfig.from_recipe("resnet")))
    # Every setting that changes training has its words, the photo augmentations and corruptions too.
    photos = training_recipe(asdict(TrainConfig.from_recipe("photos-scratch")))
    assert "horizontal flips, random resized crops down to 35% of the area, colour jitter of up to +-0.3;" in photos
    robust = training_recipe(asdict(TrainConfig.from_recipe("robust")))
    assert "photo-like corruptions (pair 0.5, affine 0.3, cut 0.15, edge 0.15," in robust


def test_the_report_names_the_runs_own_class_count_and_evaluated_split(tmp_path):
    """It said "the 10 classes" and "the test set" for every run: here 3 photo classes, and no test split."""
    band_photos(tmp_path / "photos")
    config = TrainConfig(epochs=1, batch_size=30, device="cpu", data=str(tmp_path / "photos"))
    run = train(config, tmp_path / "run", progress=False)
    evaluate_run(run.root)
    build_report(run.root)
    text = run.report_md.read_text()
    assert "softmax over the 3 classes" in text and "10 classes" not in text
    assert "Metrics on the validation set" in text and "test set" not in text
    assert "The data has no test split: the results are measured on the validation split." in text
    assert "The test split is only ever evaluated" not in text


@pytest.fixture(scope="module")
def full_report(trained_run, real_data, tmp_path_factory) -> RunDir:
    """A copy of the short run (others read the original), evaluated and analysed so that it has every figure."""
    run = RunDir(tmp_path_factory.mktemp("runs") / "report")
    shutil.copytree(trained_run.root, run.root)
    evaluate_run(run.root, data=real_data)
    analyze(run.root, batch_size=16, repeats=2)
    build_report(run.root)
    return run


# What the page shows, measured in the browser after it loaded (images included).
MEASURE = """() => {
    const viewport = document.documentElement.clientWidth;
    const images = [...document.images].map(img => ({alt: img.alt, src: img.src, complete: img.complete,
        natural: img.naturalWidth, width: img.getBoundingClientRect().width,
        right: img.getBoundingClientRect().right, column: img.parentElement.clientWidth}));
    const contents = [...document.querySelectorAll("nav a")].map(a => ({href: a.getAttribute("href"),
        text: a.textContent, target: document.getElementById(a.getAttribute("href").slice(1))?.tagName ?? null}));
    const headings = [...document.querySelectorAll("h2, h3")].map(h => "#" + h.id);
    return {viewport, pageWidth: document.documentElement.scrollWidth, images, contents, headings};
}"""


def measure_in_browser(page: Path, width: int = 1280) -> dict:
    playwright_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (make test does)")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page(viewport={"width": width, "height": 900})
            tab.goto(page.as_uri())
            return tab.evaluate(MEASURE)
        finally:
            browser.close()


@pytest.mark.real_data
@pytest.mark.skipif(not shutil.which("chromium"), reason="Debian's chromium is not installed (make test installs it)")
@pytest.mark.parametrize("width", [1280, 800])
def test_the_report_in_a_browser_has_every_section_and_figure_readable(full_report, width):
    shown = measure_in_browser(full_report.report_html, width)
    assert len(shown["images"]) == 8
    for image in shown["images"]:
        assert image["src"].startswith("data:image/png;base64,"), f"figure not embedded: {image['alt']}"
        assert image["complete"] and image["natural"] > 0, f"figure not loaded: {image['alt']}"
        assert image["right"] <= shown["viewport"], f"figure wider than the window: {image['alt']}"
        # Within the text column, and scaled down only as far as the column needs: never to a thumbnail.
        fits = min(image["natural"], image["column"]) - 1 <= image["width"] <= image["column"]
        assert fits, f"{image['alt']}: {image['width']:.0f} px of {image['natural']}, column {image['column']}"
    assert shown["pageWidth"] <= shown["viewport"], "something widens the page past the window"
    contents = shown["contents"]
    dangling = [entry["href"] for entry in contents if entry["target"] not in ("H2", "H3")]
    assert not dangling, f"the contents link to no section: {dangling}"
    assert [entry["href"] for entry in contents] == shown["headings"], "the contents miss or misorder a section"
    sections = [s.replace("`", "") for s in re.findall(r"^## (.+)$", full_report.report_md.read_text(), flags=re.M)]
    assert [e["text"] for e in contents if e["target"] == "H2"] == sections, "report.md and the contents differ"
    assert len(sections) == 9


@pytest.mark.real_data
def test_the_report_shows_heat_maps_of_the_commonest_confusions(full_report):
    metrics = read_json(full_report.metrics)
    classes = [row["class"] for row in metrics["per_class"]]
    true, wrong, count = confused_pairs(metrics["confusion_matrix"], 1)[0]
    text = full_report.report_md.read_text()
    section = text.split("### Where the model looked in its commonest confusions")[1].split("\n## ")[0]
    assert f"test split: {classes[true]} read as {classes[wrong]} ({count:,} images);" in section
    assert "![Heat maps of the commonest confusions](figures/confused_heat_maps.png)" in section
    assert full_report.figure("confused_heat_maps").is_file()
