"""Files written whole or not at all, as readable as the user's other files."""

import errno
import os
import re
import stat

import pytest
import torch

from fashionclf.errors import FashionClfError
from fashionclf.files import CheckedStdout, atomic_write, file_sha256, one_line


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


# Tests run as root, for whom chmod does not make a folder read-only: a read-only file system's error is raised
# where the temporary file is created instead, as the kernel would raise it there.
def read_only(real_open, folder):
    def open_(path, flags, *args, **kwargs):
        if str(path).startswith(str(folder)) and flags & os.O_CREAT:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)

    return open_


def full_disk(tmp):
    tmp.write_bytes(b"half")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize(
    ("case", "target", "at_fault", "problem"),
    [
        ("a file where its folder goes", "file/metrics.json", "file", "exists and is not a folder"),
        ("a file on its path", "file/sub/metrics.json", "file/sub", "a part of the path is a file, not a folder"),
        ("a folder where it goes", "folder", "folder", "is a folder"),
        ("a read-only file system", "metrics.json", "metrics.json", "read-only file system"),
        ("a full disk", "metrics.json", "metrics.json", "no space left on the device"),
    ],
)
def test_a_write_that_cannot_be_done_is_one_error_naming_the_path_and_the_cause(
    tmp_path, monkeypatch, case, target, at_fault, problem
):
    (tmp_path / "file").write_text("a file")
    (tmp_path / "folder").mkdir()
    (tmp_path / "metrics.json").write_text("old")
    if case == "a read-only file system":
        monkeypatch.setattr(os, "open", read_only(os.open, tmp_path))
    write = full_disk if case == "a full disk" else (lambda tmp: tmp.write_text("new"))
    with pytest.raises(FashionClfError, match=f"^{re.escape(f'{tmp_path / at_fault}: cannot write ({problem})')}$"):
        atomic_write(tmp_path / target, write)
    monkeypatch.undo()
    assert (tmp_path / "metrics.json").read_text() == "old"  # what was there is kept whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder", "metrics.json"]  # no temporary left


def test_errors_other_than_writing_pass_as_they_are(tmp_path):
    """A download is written through atomic_write: its network errors go on to the next mirror."""

    def reset(tmp):
        raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")

    with pytest.raises(ConnectionResetError):
        atomic_write(tmp_path / "data.gz", reset)


def test_stdout_that_cannot_be_written_is_one_error_and_the_exit_flush_finds_nothing_to_fail(tmp_path):
    """Python flushes stdout at exit: a failed write left in its buffer made a second error there (exit 120)."""
    with open("/dev/full", "w") as full:
        with pytest.raises(FashionClfError, match=r"^stdout: cannot write \(no space left on the device\)$"):
            CheckedStdout(full).write("a result\n")
        assert os.path.samefile(f"/proc/self/fd/{full.fileno()}", os.devnull)
    reader, writer = os.pipe()
    os.close(reader)  # the reader stopped, as `| head -1` does
    with os.fdopen(writer, "w") as pipe:
        with pytest.raises(FashionClfError, match=r"^stdout: cannot write \(broken pipe: the program reading it"):
            CheckedStdout(pipe).write("a result\n")


def test_text_is_kept_on_one_line_with_its_control_characters_escaped():
    assert one_line("two\nlines\r\tand \x1b[31mred\u2028.png") == r"two\nlines\r\tand \x1b[31mred\u2028.png"
    assert one_line("été/C:\\chemise 👕.png") == "été/C:\\chemise 👕.png"  # the rest as it is
