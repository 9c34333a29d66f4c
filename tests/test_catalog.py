"""Public photo sets by name: downloaded from a local mirror (this machine reaches no other), verified file by file
against the pinned manifest, and found in the cache afterwards; a bad archive leaves nothing behind."""

import hashlib
import zipfile
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from fashionclf import catalog
from fashionclf.catalog import CLOTHING_SMALL, find_or_download, manifest
from fashionclf.errors import FashionClfError


def small_set(root) -> catalog.PhotoSet:
    """A photo set like clothing-small in miniature, its folder under `root`, declared as its own data."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 4), ("validation", 2), ("test", 2)):
        for name in ("hat", "shoes"):
            folder = root / "set-1234" / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(folder / f"{i}.jpg")
    (root / "set-1234" / "LICENSE").write_text("CC0 1.0\n")
    listing = manifest(root / "set-1234")
    digest = hashlib.sha256(listing.encode()).hexdigest()
    return replace(CLOTHING_SMALL, name="small", folder="small-set", files=listing.count("\n"), manifest_sha256=digest,
                   max_archive_bytes=1_000_000)  # fmt: skip


def zip_folder(folder, target) -> None:
    with zipfile.ZipFile(target, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder.parent).as_posix())


def test_clothing_small_is_declared_as_its_manifest_says(tmp_path):
    """The pinned numbers are those of the manifest in ../shared/photos (3,783 files at the pinned commit)."""
    assert CLOTHING_SMALL.files == 3783 and CLOTHING_SMALL.archives[0].endswith(".zip")
    assert catalog.SETS["clothing-small"] is CLOTHING_SMALL


def test_a_set_is_downloaded_verified_and_then_found_in_the_cache(tmp_path, mirrors):
    photo_set = small_set(tmp_path / "upstream")
    (tmp_path / "served").mkdir()
    zip_folder(tmp_path / "upstream" / "set-1234", tmp_path / "served" / "set.zip")
    photo_set = replace(photo_set, archives=(mirrors(tmp_path / "served") + "set.zip",))
    folder = find_or_download(photo_set, root=tmp_path / "cache")
    assert folder == tmp_path / "cache" / "small-set"
    assert manifest(folder) == manifest(tmp_path / "upstream" / "set-1234")
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["small-set"]  # no temporary left
    (tmp_path / "served" / "set.zip").unlink()  # the second use needs no network
    assert find_or_download(photo_set, root=tmp_path / "cache") == folder


def test_an_archive_whose_files_do_not_match_is_refused_and_nothing_is_kept(tmp_path, mirrors):
    photo_set = small_set(tmp_path / "upstream")
    (tmp_path / "upstream" / "set-1234" / "LICENSE").write_text("changed\n")
    (tmp_path / "served").mkdir()
    zip_folder(tmp_path / "upstream" / "set-1234", tmp_path / "served" / "set.zip")
    (tmp_path / "served" / "not-a-zip.zip").write_bytes(b"no zip here")
    url = mirrors(tmp_path / "served")
    photo_set = replace(photo_set, archives=(url + "missing.zip", url + "not-a-zip.zip", url + "set.zip"))
    with pytest.raises(FashionClfError) as error:
        find_or_download(photo_set, root=tmp_path / "cache")
    message = str(error.value)
    assert message.startswith(f"{tmp_path / 'cache' / 'small-set'}: download failed from every mirror")
    for reason in ("HTTP 404", "not a zip archive", "its files do not match small"):
        assert reason in message
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_cached_set_that_was_changed_is_refused(tmp_path):
    photo_set = small_set(tmp_path)
    (tmp_path / "set-1234").rename(tmp_path / "small-set")
    next((tmp_path / "small-set" / "train" / "hat").iterdir()).write_bytes(b"edited")
    with pytest.raises(FashionClfError, match="small-set: its files do not match small .*delete the folder"):
        find_or_download(photo_set, root=tmp_path)
