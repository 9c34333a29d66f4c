import shutil

from fashionclf.datasets import describe
from fashionclf.preprocess import InputFormat
from fashionclf.provenance import data_changes
from fashionclf.sources import load_dataset

from pictures import SAMPLE

PHOTO = InputFormat("photo", 3, 32)


def test_a_photo_split_added_beside_the_trained_ones_is_no_change_but_a_changed_photo_is(tmp_path):
    folder = tmp_path / "photos"
    shutil.copytree(SAMPLE, folder)
    recorded = describe(load_dataset(folder, PHOTO))  # what config.json records of a run trained on it
    shutil.copytree(SAMPLE / "validation", folder / "test")  # added to measure the run on photos it never saw
    with_test = load_dataset(folder, PHOTO)
    assert with_test.test is not None and data_changes(recorded, with_test) == {}
    hat = next((folder / "train" / "hat").iterdir())
    shutil.copy(next((folder / "train" / "shoes").iterdir()), hat)
    assert list(data_changes(recorded, load_dataset(folder, PHOTO))) == ["train photos"]
    shutil.rmtree(folder / "validation")  # a split the run read, gone
    assert set(data_changes(recorded, load_dataset(folder, PHOTO))) == {"train photos", "validation photos"}


def test_a_validation_split_added_to_a_photo_folder_is_a_change(tmp_path):
    """A run on train/ alone held some of it out to validate; with validation/ added, a resumed run would train on
    all of train/: other data."""
    folder = tmp_path / "photos"
    shutil.copytree(SAMPLE / "train", folder / "train")
    recorded = describe(load_dataset(folder, PHOTO))
    shutil.copytree(SAMPLE / "validation", folder / "validation")
    changes = data_changes(recorded, load_dataset(folder, PHOTO))
    assert list(changes) == ["validation photos"] and changes["validation photos"]["recorded"] is None
