"""Public photo sets by name (`--data clothing-small`): found in the user cache, or downloaded into it.

A set is declared as data, as torchvision declares its resources: where its archive is, how many files it holds,
and the SHA-256 of its manifest (every file's SHA-256 and path, sorted by path, as `sha256sum` writes them). Every
file is checked against it on every use, and a download lands in the cache only whole and verified: it is fetched
into a temporary folder beside the cache, unpacked, verified, then renamed into place.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath

from fashionclf.datasets import cache_root
from fashionclf.download import BadDownload, fetch, from_mirrors
from fashionclf.errors import FashionClfError
from fashionclf.files import file_sha256


@dataclass(frozen=True)
class PhotoSet:
    name: str  # what --data takes
    folder: str  # its folder in the cache
    archives: tuple[str, ...]  # zip archives of the set, tried in order
    files: int
    manifest_sha256: str
    max_archive_bytes: int  # a longer answer is not the archive
    source: str


CLOTHING_SMALL = PhotoSet(
    name="clothing-small",
    folder="clothing-dataset-small",
    # GitHub's archive of one commit; its zip bytes are not guaranteed stable, so the files inside are verified.
    archives=(
        "https://github.com/alexeygrigorev/clothing-dataset-small/archive/11961516512414bf9f6c150a832cfd21b54a6b54.zip",
    ),
    files=3783,
    manifest_sha256="44ccec38059c6882f74f9b39e8823294a1c18f76cfdb10aebc474ea302081632",
    max_archive_bytes=300_000_000,
    source="github.com/alexeygrigorev/clothing-dataset-small (CC0 1.0): 3,781 photos, 10 classes, "
    "train/validation/test",
)
SETS = {photo_set.name: photo_set for photo_set in (CLOTHING_SMALL,)}


def find_or_download(photo_set: PhotoSet, root: Path | None = None, timeout: float = 60) -> Path:
    """The set's verified folder in the cache, downloaded first if it is not there."""
    root = Path(root or cache_root())
    target = root / photo_set.folder
    if not target.is_dir():
        root.mkdir(parents=True, exist_ok=True)
        from_mirrors(
            photo_set.archives, partial(_download, photo_set=photo_set, target=target, timeout=timeout), target
        )
    problem = _mismatch(target, photo_set)
    if problem:
        raise FashionClfError(f"{target}: {problem}; delete the folder to download {photo_set.name} again")
    return target


def _download(url: str, *, photo_set: PhotoSet, target: Path, timeout: float) -> None:
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.") as scratch:
        archive = Path(scratch) / "archive.zip"
        fetch(url, archive, photo_set.max_archive_bytes, timeout, photo_set.name)
        unpacked = _unpack(archive, Path(scratch) / "unpacked", photo_set)
        if problem := _mismatch(unpacked, photo_set):
            raise BadDownload(problem)
        os.replace(unpacked, target)


def _unpack(archive: Path, into: Path, photo_set: PhotoSet) -> Path:
    """Unpack a zip whose files lie in one top folder (as GitHub's archives hold them); return that folder. Paths
    that would leave it, and archives larger than the set when unpacked, are refused."""
    try:
        with zipfile.ZipFile(archive) as zipped:
            members = [m for m in zipped.infolist() if not m.is_dir()]
            tops = {PurePosixPath(m.filename).parts[0] for m in members}
            if len(tops) != 1 or any(".." in PurePosixPath(m.filename).parts for m in members):
                raise BadDownload("not an archive of one folder")
            if len(members) > photo_set.files or sum(m.file_size for m in members) > 2 * photo_set.max_archive_bytes:
                raise BadDownload(f"holds more than the {photo_set.files:,} files of {photo_set.name}")
            for member in members:
                destination = into / member.filename
                destination.parent.mkdir(parents=True, exist_ok=True)
                with zipped.open(member) as source, destination.open("wb") as out:
                    shutil.copyfileobj(source, out)
    except zipfile.BadZipFile as exc:
        raise BadDownload(f"not a zip archive ({exc})") from None
    return into / tops.pop()


def manifest(folder: Path) -> str:
    """Every file's SHA-256 and path below `folder`, sorted by path, in `sha256sum`'s format."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return "".join(f"{file_sha256(path)}  {path.relative_to(folder).as_posix()}\n" for path in files)


def _mismatch(folder: Path, photo_set: PhotoSet) -> str | None:
    listing = manifest(folder)
    count = listing.count("\n")
    if count != photo_set.files:
        return f"holds {count:,} files, expected the {photo_set.files:,} of {photo_set.name}"
    digest = hashlib.sha256(listing.encode()).hexdigest()
    if digest != photo_set.manifest_sha256:
        return f"its files do not match {photo_set.name} (manifest SHA-256 {digest[:16]}..., expected " \
            f"{photo_set.manifest_sha256[:16]}...)"  # fmt: skip
    return None
