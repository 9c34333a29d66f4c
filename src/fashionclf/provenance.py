"""Whether the data a later stage reads is still the data a run was trained on.

config.json records a digest of every data file the run read: the SHA-256 of a CSV file, the pinned SHA-256 of each
Fashion-MNIST IDX file (which loading verifies), and for a photo folder each split's digest of every photo's
content and class (whatever preprocessing reads them). Loading computes the same digests, so the comparison hashes
nothing a second time; replaced data would otherwise give metrics on a "test" split the model was partly trained on.
"""

from __future__ import annotations

import warnings

from fashionclf.datasets import Dataset, describe
from fashionclf.errors import FashionClfError, FashionClfWarning
from fashionclf.photos import split_digest_name
from fashionclf.preprocess import InputFormat
from fashionclf.rundir import RunDir, read_json, run_data
from fashionclf.sources import load_dataset

SHOWN = 12  # hex digits of a digest in a message: enough to tell two apart
# A test split added to a photo folder since the run (to measure a run that trained on every photo it had) changes
# nothing the run read; a validation split added would change what a resumed run trains on (train/ whole, where it
# held some out).
ADDED_TEST_SPLIT = split_digest_name("test")


def run_dataset(
    run: RunDir, input: InputFormat, command: str, allow_changed: bool = False, way_out: str | None = None
) -> tuple[Dataset, dict]:
    """The data the run was trained with, in `input`'s format, and what changed in it since (`data_changes`).
    Changed data is refused, naming what changed and `way_out` (by default --allow-changed-data), unless
    `allow_changed`: then a warning says so."""
    recorded = read_json(run.config).get("data", {})
    data = load_dataset(run_data(run), input)
    changes = data_changes(recorded, data)
    if changes and not allow_changed:
        way_out = way_out or f"pass --allow-changed-data to {command} it anyway"
        raise FashionClfError(f"{changed_data(run, data, changes)}; {way_out}, or train a new run")
    if changes:
        warnings.warn(f"{changed_data(run, data, changes)}; {command} goes on, recorded as data_changed",
                      FashionClfWarning, stacklevel=2)  # fmt: skip
    return data, changes


def trained_on(run: RunDir, data: Dataset, split_name: str, own_data: bool) -> bool:
    """Whether the run trained on images of the data's split: one of the splits it trained on ("all" holds them
    all), unchanged. A photo folder records each split's digest, so the same folder with a test split added still
    holds the training photos; other data must be unchanged as a whole. Of a run that recorded no files (trained on
    data handed over in memory), only its own data counts."""
    recorded = read_json(run.config).get("data", {})
    trained = recorded.get("trained_on", ["train"])  # runs of earlier versions trained on their train split
    named = {entry["filename"] for entry in recorded.get("files", [])}
    if not named and not own_data:
        return False
    changes = data_changes(recorded, data)
    for name in trained if split_name == "all" else set(trained) & {split_name}:
        digest = split_digest_name(name)
        if not (digest in changes if digest in named else changes):
            return True
    return False


def change_record(changes: dict[str, dict]) -> dict:
    """What a result file (metrics.json, quantization.json, analysis.json) records of the comparison."""
    return {"data_changed": bool(changes), **({"data_changes": changes} if changes else {})}


def data_changes(recorded: dict, data: Dataset) -> dict[str, dict]:
    """The files (or photo splits) whose digest in `data` differs from the one the run recorded (config.json's
    "data"): name -> {"recorded", "found"}, None where one side has no such file. A run that recorded no files
    (trained on data handed over in memory) has nothing to compare. A photo test split added since is no change
    (ADDED_TEST_SPLIT)."""
    before = _digests(recorded)
    if not before:
        return {}
    now = _digests(describe(data))
    return {
        name: {"recorded": before.get(name), "found": now.get(name)}
        for name in sorted(before.keys() | now.keys())
        if before.get(name) != now.get(name) and not (name not in before and name == ADDED_TEST_SPLIT)
    }


def changed_data(run: RunDir, data: Dataset, changes: dict[str, dict]) -> str:
    """One line: the data, the run, and what changed in it."""
    return f"{data.directory}: not the data {run.root} was trained on ({'; '.join(map(_changed, changes.items()))})"


def _changed(change: tuple[str, dict]) -> str:
    name, digests = change
    if digests["found"] is None:
        return f"{name} is gone"
    if digests["recorded"] is None:
        return f"{name} is new"
    return f"{name} has SHA-256 {digests['found'][:SHOWN]}..., recorded {digests['recorded'][:SHOWN]}..."


def _digests(described: dict) -> dict[str, str]:
    return {file["filename"]: file["raw_sha256"] for file in described.get("files", [])}
