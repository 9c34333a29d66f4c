import numpy as np
import pytest
import torch
from PIL import Image

from fashionclf.errors import FashionClfError
from fashionclf.explain import confused_pairs, confusion_figure, explainer_for, load_explainer, over_picture, placement
from fashionclf.models import create_model, list_models, model_entry
from fashionclf.preprocess import Frame, InputFormat, on_white

from synthetic import quick_spec


@pytest.fixture(scope="module")
def test_images(real_data) -> tuple[np.ndarray, np.ndarray]:
    """60 test images, every class, and their labels."""
    return real_data.test.images[:60].numpy(), real_data.test.labels[:60].numpy()


def class_probability(explainer, images: np.ndarray, classes: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        logits = explainer.model(torch.from_numpy(images.astype(np.float32) / 255))
    return torch.softmax(logits, 1)[np.arange(len(images)), classes].numpy()


def test_blacking_out_the_hottest_pixels_costs_the_class_more_than_as_many_random_ones(trained_run, test_images):
    explainer = load_explainer(trained_run.root)
    images, _ = test_images
    predicted = explainer.model(torch.from_numpy(images.astype(np.float32) / 255)).argmax(1).numpy()
    heats = explainer.heat_maps(images, predicted[:, None])[:, 0]
    assert heats.shape == (60, 28, 28) and heats.min() >= 0 and heats.max(axis=(1, 2)).min() == pytest.approx(1)
    hottest = heats.reshape(60, -1).argsort(1)[:, -78:]  # a tenth of the pixels
    random = np.random.default_rng(0).permuted(np.tile(np.arange(784), (60, 1)), axis=1)[:, :78]
    drops = {}
    for name, pixels in (("hottest", hottest), ("random", random)):
        covered = images.reshape(60, -1).copy()
        np.put_along_axis(covered, pixels, 0, axis=1)
        before = class_probability(explainer, images, predicted)
        drops[name] = (before - class_probability(explainer, covered.reshape(images.shape), predicted)).mean()
    assert drops["hottest"] > 2 * drops["random"], drops


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_gets_a_heat_map_per_class_over_its_input(name):
    torch.manual_seed(0)
    spec = quick_spec(name)
    explainer = explainer_for(create_model(name, spec), spec)
    assert explainer.method == ("occlusion" if spec.input.domain == "fashion-mnist" else "Grad-CAM")
    images = (np.random.default_rng(0).random((2, *spec.input_size)) * 255).astype(np.uint8)
    heats = explainer.heat_maps(images, np.array([[0, 1], [2, 3]]))
    assert heats.shape == (2, 2, spec.input.size, spec.input.size)
    assert heats.min() >= 0 and heats.max() == pytest.approx(1)


def test_the_views_a_photo_model_averages_are_folded_back_where_they_came_from():
    """With flip averaging a photo and its mirror image get the same answer; their heat maps must be mirror images
    too, which holds only if the mirrored view's map is carried back mirrored."""
    torch.manual_seed(0)
    spec = model_entry("photo_resnet9").spec()
    explainer = explainer_for(create_model("photo_resnet9", spec, flip_average=True), spec)
    photo = (np.random.default_rng(1).random((1, *spec.input_size)) * 255).astype(np.uint8)
    photo[..., :, :20] = 255  # a bright band on the left: the two sides differ
    classes = np.array([[0, 5]])
    plain = explainer.heat_maps(photo, classes)
    mirrored = explainer.heat_maps(np.ascontiguousarray(photo[..., ::-1]), classes)
    assert not np.allclose(plain, plain[..., ::-1], atol=0.05)
    np.testing.assert_allclose(mirrored, plain[..., ::-1], atol=1e-4)


def test_a_model_may_name_the_layer_its_heat_maps_come_from():
    spec = model_entry("photo_resnet9").spec()
    model = create_model("photo_resnet9", spec)
    model.explained_layer = "layer2"
    assert explainer_for(model, spec).layer is model.layer2


def test_a_heat_map_is_drawn_on_the_part_of_the_picture_the_model_saw():
    picture = Image.new("RGB", (100, 200), "white")  # fitted into a square, padded left and right
    array, frame = InputFormat("photo", 3, 64).prepare_framed(picture)
    assert frame == Frame(-50, 0, 200) and placement(frame, picture.size) == pytest.approx(
        {"left": -0.5, "top": 0.0, "width": 2.0, "height": 1.0}
    )
    heat = np.zeros((64, 64), np.float32)
    heat[:, :32] = 1  # the input's left half: the padding, then the picture's left half
    changed = np.any(np.asarray(over_picture(picture, heat, frame)) != np.asarray(on_white(picture)), axis=2)
    assert changed[:, :48].all() and not changed[:, 52:].any()


def test_heat_maps_need_the_pytorch_model(tmp_path):
    with pytest.raises(FashionClfError, match=r"model\.onnx: heat maps need the PyTorch model"):
        load_explainer(tmp_path / "model.onnx")
    with pytest.raises(
        FashionClfError, match=r"heat maps need the run's checkpoints/best\.pt, which this folder lacks"
    ):
        load_explainer(tmp_path)  # an exported folder holds weights, but no checkpoint


def test_the_commonest_confusions_are_the_largest_counts_off_the_diagonal():
    assert confused_pairs([[50, 1, 0], [3, 40, 0], [0, 2, 70]], 3) == [(1, 0, 3), (2, 1, 2), (0, 1, 1)]
    assert confused_pairs([[5, 0], [0, 5]], 3) == []


def test_the_confusion_figure_shows_the_commonest_confusions_or_nothing(trained_run, test_images, tmp_path):
    explainer = load_explainer(trained_run.root)
    images, labels = test_images
    probabilities = np.eye(10)[labels]
    assert not confusion_figure(explainer, images, labels, probabilities, tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()
    probabilities[labels == 6] = np.eye(10)[0]  # every shirt read as a T-shirt
    assert confusion_figure(explainer, images, labels, probabilities, tmp_path / "shirts.png")
    assert Image.open(tmp_path / "shirts.png").format == "PNG"
