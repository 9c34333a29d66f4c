import json
import shutil

import pytest
import torch

from fashionclf import card
from fashionclf.checkpoint import load_model, recorded_spec
from fashionclf.config import TrainConfig
from fashionclf.errors import FashionClfError
from fashionclf.evaluate import evaluate_run
from fashionclf.pretrained import PhotoTransfer
from fashionclf.sources import load_dataset
from fashionclf.train import train
from fashionclf.transfer import imagenet_class_names, set_votes

from pictures import SAMPLE

SMALL = {"image_size": 64, "device": "cpu", "data": str(SAMPLE)}  # views at 48 px: quick, and enough to test with


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _zero_shot(classes: tuple[str, ...], map_path: str | None = None) -> dict[str, list[str]]:
    return set_votes(PhotoTransfer("lite0", len(classes), 64, "imagenet", 16, 0.5).head, classes, map_path)


def test_the_shipped_map_scores_class_names_by_their_garment_words():
    model = PhotoTransfer("lite0", 3, 64, "imagenet", 16, 0.5)
    chosen = set_votes(model.head, ("T-Shirt", "jeans", "Shoes"), None)
    assert chosen["T-Shirt"] == ["jersey"] and "running shoe" in chosen["Shoes"]
    assert chosen["jeans"] == _zero_shot(("pants",))["pants"]  # an alias of pants
    votes, names = model.head.vote.votes, imagenet_class_names()
    assert votes[names.index("jersey, T-shirt, tee shirt")].tolist() == [1, 0, 0]
    assert votes.sum(0).tolist() == [len(chosen[name]) for name in ("T-Shirt", "jeans", "Shoes")]


def test_a_class_without_an_entry_is_named(tmp_path):
    with pytest.raises(FashionClfError, match="garments.json: no entry for the class 'umbrella'"):
        _zero_shot(("shoes", "umbrella"))
    edited = tmp_path / "map.json"
    edited.write_text(json.dumps({"umbrella": {"aliases": [], "imagenet": ["umbrela"]}}))
    with pytest.raises(FashionClfError, match=f"{edited}: no ImageNet class is called 'umbrela'"):
        _zero_shot(("umbrella",), str(edited))
    edited.write_text("[1, 2]")
    with pytest.raises(FashionClfError, match="a class map is"):
        _zero_shot(("umbrella",), str(edited))


@pytest.fixture(scope="module")
def frozen_run(tmp_path_factory):
    config = TrainConfig.from_recipe("photos", epochs=3, batch_size=16, **SMALL)
    return train(config, tmp_path_factory.mktemp("runs") / "frozen", progress=False)


def test_a_frozen_run_trains_the_head_alone_on_cached_features(frozen_run, tmp_path):
    model, _ = load_model(frozen_run.best_checkpoint)
    imagenet = PhotoTransfer("lite0", 10, 64, "mlp", 512, 0.5)
    imagenet.load_imagenet_weights()
    for name, tensor in imagenet.backbone.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[name], tensor), name
    assert not torch.equal(model.head.standardise.shift, imagenet.head.standardise.shift)
    history = json.loads(frozen_run.history_json.read_text())
    assert len(history) == 3 and history[-1]["train_loss"] < history[0]["train_loss"]


@torch.no_grad()
def test_a_frozen_run_evaluates_on_cached_features_as_the_whole_model_predicts(frozen_run):
    metrics = evaluate_run(frozen_run.root, split="validation")  # named: it trained on it (below)
    assert metrics["images"] == 20 and metrics["data"]["split"] == "validation"
    model, checkpoint = load_model(frozen_run.best_checkpoint)
    validation = load_dataset(SAMPLE, recorded_spec(checkpoint).input).validation
    predicted = model.eval()(validation.images.float() / 255).argmax(1)
    assert (predicted == validation.labels).float().mean().item() == pytest.approx(metrics["accuracy"])


def test_the_photos_recipe_trains_on_both_splits_and_evaluate_then_wants_photos_it_never_saw(frozen_run, tmp_path):
    recorded = json.loads(frozen_run.config.read_text())
    assert recorded["data"]["trained_on"] == ["train", "validation"] and recorded["train"]["final"]
    assert "features of 60 + 0 photos" in frozen_run.log.read_text()  # 40 training photos and 20 validation ones
    with pytest.raises(FashionClfError, match=r"trained on the validation split of .* too \(--final\)"):
        evaluate_run(frozen_run.root)
    metrics = evaluate_run(frozen_run.root, split="validation")
    assert metrics["data"]["trained_on"]
    run_config = json.loads(frozen_run.config.read_text())  # the model card claims no held-out accuracy for it
    assert "model-index" not in card.front_matter(frozen_run, run_config, metrics, [], "unknown", "efficientnet_lite0")
    assert "The model trained on these images" in card.evaluation_section(metrics, epoch_chosen=False)
    # The same folder with a test split: evaluate takes it, as photos the run never saw (copies of the validation
    # photos here: what is checked is which split is chosen, by the digests recorded per split).
    shutil.copytree(SAMPLE, tmp_path / "with-test")
    shutil.copytree(SAMPLE / "validation", tmp_path / "with-test" / "test")
    metrics = evaluate_run(frozen_run.root, data_path=tmp_path / "with-test")
    assert metrics["data"]["split"] == "test" and not metrics["data"]["trained_on"]


def test_a_zero_shot_run_is_made_without_training_and_is_an_ordinary_run(tmp_path):
    # At 192 px (views of 144), 10 of these 20 photos are right, as at the recipe's 384, in under half the time.
    config = TrainConfig.from_recipe("zero-shot", device="cpu", data=str(SAMPLE), image_size=192)
    run = train(config, tmp_path / "zero", progress=False)
    assert not json.loads(run.history_json.read_text())[-1].get("train_loss")
    metrics = evaluate_run(run.root)
    assert metrics["images"] == 20 and metrics["accuracy"] > 0.3  # 10 classes: chance is 0.1
    log = run.log.read_text()
    assert "zero-shot: shoes is scored by the ImageNet classes" in log
