"""Files written whole or not at all, as readable as the user's other files."""

import os
import stat

import pytest
import torch

from fashionclf.files import atomic_write, file_sha256


def test_a_failed_write_leaves_the_old_file_whole(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")

    def write_half_then_fail(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, write_half_then_fail)
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_run_files_are_as_readable_as_the_umask_allows(tmp_path):
    previous = os.umask(0o022)
    try:
        atomic_write(tmp_path / "metrics.json", lambda tmp: tmp.write_text("{}"))
        atomic_write(tmp_path / "best.pt", lambda tmp: torch.save({}, tmp))
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "metrics.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "best.pt").stat().st_mode) == 0o644


def test_a_file_hash_is_its_sha256(tmp_path):
    (tmp_path / "a").write_bytes(b"abc")
    assert file_sha256(tmp_path / "a") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
