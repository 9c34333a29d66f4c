"""Downloads: streamed with a bound on their size and a progress bar, tried mirror by mirror, each failure kept in
one line for the final error (as torchvision's `for mirror in mirrors: try ... else: raise`)."""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from tqdm import tqdm

from fashionclf.errors import FashionClfError


class BadDownload(ValueError):
    """What is wrong with one downloaded copy; the caller tries the next mirror."""


def fetch(url: str, target: Path, limit: int, timeout: float, label: str) -> None:
    """Stream `url` into the file `target`, refusing an answer longer than `limit` bytes: a misbehaving server
    cannot fill the disk."""
    with Path(target).open("wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
        length = response.headers.get("Content-Length")
        received = 0
        # disable=None: a bar on a terminal only, so logs and tests stay clean
        with tqdm(total=int(length) if length else None, unit="B", unit_scale=True, desc=label, leave=False,
                  disable=None) as bar:  # fmt: skip
            while chunk := response.read(1 << 16):
                received += len(chunk)
                if received > limit:
                    raise BadDownload(f"answer is larger than {limit:,} bytes, too large for {label}")
                out.write(chunk)
                bar.update(len(chunk))


def from_mirrors(mirrors: Sequence[str], attempt: Callable[[str], None], target: Path) -> None:
    """Call attempt(mirror) for each mirror until one succeeds; FashionClfError with every mirror's reason if none
    does."""
    failures = []
    for mirror in mirrors:
        try:
            attempt(mirror)
            return
        except (OSError, http.client.HTTPException, BadDownload) as exc:
            failures.append(f"{mirror}: {reason(exc)}")
    raise FashionClfError(f"{target}: download failed from every mirror ({'; '.join(failures)})")


def reason(exc: Exception) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    cause = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    return " ".join(str(cause).split()) or type(exc).__name__  # one line, whatever the library wrote
