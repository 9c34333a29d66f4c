"""What fashionclf writes: files whole or not at all, their content hashes, one message for a write that fails (to a
file or to stdout), and text kept on one line."""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from fashionclf.errors import FashionClfError

# The errors that say a write cannot be done, in the words of the messages.
WRITE_PROBLEMS = {
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for the file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EEXIST: "exists and is not a folder",
    errno.EISDIR: "is a folder",
    errno.EPIPE: "broken pipe: the program reading it stopped",
}
# The ones that only writing causes: reported as such wherever they come from.
STORAGE_PROBLEMS = (errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def write_error(path: Path | str, exc: OSError) -> FashionClfError:
    return FashionClfError(f"{path}: cannot write ({WRITE_PROBLEMS.get(exc.errno or 0, exc.strerror or str(exc))})")


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """Writes to `path` whose failures (a read-only or full disk, a file where a folder must be) become one
    FashionClfError naming the path at fault; other OSErrors (a network error of a download written here) pass."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in WRITE_PROBLEMS:
            raise
        raise write_error(_at_fault(Path(path), exc), exc) from None


def _at_fault(path: Path, exc: OSError) -> Path:
    """The folder on the way to `path` that the error is about (one that exists as a file), or `path` itself, never
    the temporary file beside it or the lock file in it, which the user does not know of."""
    failed = Path(exc.filename) if isinstance(exc.filename, str) else None
    return failed if failed is not None and failed in (path, *path.parents) else path


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call write(tmp) on a temporary file beside `path`, then rename it over `path`: a crash or an error leaves the
    old file whole and no temporary behind. A failed write is a FashionClfError naming the path (see `writing`)."""
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _new_temporary(path)
        try:
            write(tmp)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def _new_temporary(path: Path) -> Path:
    """An empty file beside `path`, created as open() creates files (mode 0666 less the umask), so the renamed file
    is as readable as any other the user writes; tempfile.mkstemp would make it private (0600)."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class CheckedStdout:
    """Standard output, flushed at every write so that a failure (a full disk, a reader that stopped: EPIPE) comes
    from the line that failed, as one FashionClfError, rather than from Python's flush at exit as a traceback. After
    a failure stdout points at /dev/null, as in the recipe of the signal module's note on SIGPIPE, so that the flush
    at exit finds nothing to fail on. Every other attribute is the stream's own."""

    def __init__(self, stream: TextIO):
        self._stream = stream

    def write(self, text: str) -> int:
        with self._checked():
            written = self._stream.write(text)
            self._stream.flush()
        return written

    def flush(self) -> None:
        with self._checked():
            self._stream.flush()

    def __getattr__(self, name: str):
        return getattr(self._stream, name)

    @contextmanager
    def _checked(self) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
            raise write_error("stdout", exc) from None


def one_line(text: str) -> str:
    """`text` with its control characters and line separators escaped as Python writes them (a newline as \\n, ESC
    as \\x1b), so that a file name can neither split a line of output nor move the terminal's cursor."""
    return "".join(repr(c)[1:-1] if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in text)
