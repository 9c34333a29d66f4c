import errno
import os
import re
import signal

import pytest

from fashionclf.errors import FashionClfError
from fashionclf.rundir import locked


def test_a_second_writer_is_refused_until_the_first_dies(held_run):
    run, holder = held_run
    with pytest.raises(FashionClfError, match=rf"held: in use by fashionclf train \(pid {holder.pid} on "):
        with locked(run, "fashionclf quantize"):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with locked(run, "fashionclf quantize"):  # the dead process's lock is taken over
        with locked(run, "fashionclf report"):  # and a process may nest its own
            pass


@pytest.mark.parametrize(
    ("case", "problem"),
    [
        ("a file", "exists and is not a folder"),
        ("a read-only run", "read-only file system"),
        ("a full disk", "no space left on the device"),
    ],
)
def test_a_run_directory_that_cannot_be_written_is_one_error_before_any_work(tmp_path, monkeypatch, case, problem):
    """train --out FILE, and evaluate or quantize of a run on a read-only disk, ended in a traceback."""
    run = tmp_path / "run"
    run.write_text("a file") if case == "a file" else run.mkdir()
    # Tests run as root, for whom chmod makes nothing read-only: the kernel's errors are raised where it raises them.
    failing = {"a read-only run": ("open", errno.EROFS), "a full disk": ("pwrite", errno.ENOSPC)}.get(case)
    if failing:
        monkeypatch.setattr(os, failing[0], failing_with(failing[1]))
    with pytest.raises(FashionClfError, match=rf"^{re.escape(str(run))}: cannot write \({problem}\)$"):
        with locked(run, "fashionclf evaluate"):
            pytest.fail("the run was taken")
    monkeypatch.undo()
    if run.is_dir():
        with locked(run, "fashionclf evaluate"):  # the failed attempt let go of the lock
            pass


def failing_with(code: int):
    def fail(*args):
        raise OSError(code, os.strerror(code))

    return fail
