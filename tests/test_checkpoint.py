"""The checkpoint format: what is saved, what is refused on loading, and the model rebuilt from the file alone."""

import os
import pickle

import pytest
import torch

from fashionclf.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, load_model, save_checkpoint
from fashionclf.errors import FashionClfError
from fashionclf.models import create_model


class Exploit:
    """Unpickling this runs code: exactly what weights_only=True must refuse."""

    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def good_checkpoint() -> dict:
    model = create_model("fashion_cnn")
    return {"format": CHECKPOINT_FORMAT, "model": "fashion_cnn", "model_args": {}, "state_dict": model.state_dict()}


def test_a_checkpoint_round_trips_and_rebuilds_its_model(tmp_path):
    checkpoint = good_checkpoint()
    save_checkpoint(tmp_path / "c.pt", checkpoint)
    model, loaded = load_model(tmp_path / "c.pt")
    assert loaded["model"] == "fashion_cnn" and not model.training
    assert torch.equal(model.state_dict()["fc1.weight"], checkpoint["state_dict"]["fc1.weight"])


def test_a_pickle_with_code_in_it_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "payload": Exploit()}, path)
    with pytest.raises(FashionClfError, match="evil.pt: not a loadable fashionclf checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a loadable"),
        (b"just some text\n", "not a loadable"),
        (pickle.dumps({"a": 1}), "not a loadable"),
    ],
)
def test_files_of_other_programs_are_refused(tmp_path, content, message):
    path = tmp_path / "other.pt"
    path.write_bytes(content)
    with pytest.raises(FashionClfError, match=f"other.pt: {message}"):
        load_checkpoint(path)


def test_a_torch_file_that_we_did_not_write_is_refused(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    with pytest.raises(FashionClfError, match="foreign.pt: not a fashionclf checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


def test_a_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(FashionClfError, match="missing.pt: checkpoint does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_weights_of_another_architecture_are_refused(tmp_path):
    checkpoint = good_checkpoint()
    checkpoint["state_dict"]["fc1.weight"] = torch.zeros(5, 5)
    save_checkpoint(tmp_path / "c.pt", checkpoint)
    with pytest.raises(FashionClfError, match="c.pt: weights do not fit model 'fashion_cnn'"):
        load_model(tmp_path / "c.pt")


def test_model_arguments_the_model_does_not_take_are_refused(tmp_path):
    checkpoint = {**good_checkpoint(), "model_args": {"dropout": 0.25, "depth": 12}}
    save_checkpoint(tmp_path / "c.pt", checkpoint)
    with pytest.raises(FashionClfError, match=r"model 'fashion_cnn' cannot be built with arguments .*'depth': 12"):
        load_model(tmp_path / "c.pt")
