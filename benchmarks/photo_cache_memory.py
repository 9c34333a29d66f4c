"""Resident memory of the photo cache on a folder of 300,000 photos: decoding them into the cache, then training
steps whose batches are drawn at random from the whole memory-mapped set.

    .venv/bin/python benchmarks/photo_cache_memory.py [--photos 300000] [--folder /tmp/photos-300k] [--steps 200]

The photos are synthetic (written once into --folder, 10 classes, JPEG, 160x120 px, 9 in 10 in train/ and the
rest in validation/). The cache is built, then read back and trained on, in a separate process each, so that each
one's peak resident memory (VmHWM) is its own; the size of the cache file is printed beside it. The peer is the
alternative a cache replaces: the same uint8 arrays held in memory, whose size is the cache file's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = [f"class{k}" for k in range(10)]


def write_photos(folder: Path, photos: int) -> None:
    """Photos whose class is where a dark blob lies on a lit, noisy floor; written once, kept between runs."""
    if (folder / "done").is_file():
        return

    def write(index: int) -> None:
        rng = np.random.default_rng(index)
        label, split = index % 10, "validation" if index % 10_000 < 1_000 else "train"
        pixels = 150 + rng.normal(0, 20, (120, 160, 3)) + np.linspace(0, 60, 160)[None, :, None]
        top, left = 10 + 8 * (label // 5) * 5, 10 + 25 * (label % 5)
        pixels[top : top + 40, left : left + 30] -= 100
        target = folder / split / CLASSES[label] / f"{index:06d}.jpg"
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(target, quality=80)

    for split in ("train", "validation"):
        for name in CLASSES:
            (folder / split / name).mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        for done, _ in enumerate(pool.map(write, range(photos), chunksize=1000), start=1):
            if done % 50_000 == 0:
                print(f"  wrote {done:,} photos ({time.perf_counter() - started:.0f} s)", flush=True)
    (folder / "done").write_text(f"{photos}\n")


CHILD = """
import json, re, sys, time
from pathlib import Path
import torch
from fashionclf.augment import augment, photo_augment
from fashionclf.datasets import batches, to_float
from fashionclf.models import create_model, model_entry
from fashionclf.sources import load_dataset

def memory():
    status = Path("/proc/self/status").read_text()
    return {key: int(re.search(key + r":\\s+(\\d+) kB", status).group(1)) // 1024 for key in ("VmHWM", "VmRSS")}

folder, steps, size = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
started = time.perf_counter()
spec = model_entry("photo_resnet9").spec(size=size)
data = load_dataset(folder, spec.input)
print("loaded", json.dumps(memory()), flush=True)
if steps:
    model = create_model("photo_resnet9", spec, width=16).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    generator = torch.Generator().manual_seed(0)
    started = time.perf_counter()
    for step, (images, labels) in enumerate(batches(data.train, 128, shuffle=True, generator=generator)):
        if step == steps:
            break
        images = augment(photo_augment(to_float(images), generator, 0.35, 0, 0.3), generator, flip=True)
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print("trained", json.dumps(memory()), flush=True)
"""


def run_child(folder: Path, steps: int, size: int, cache_home: Path) -> dict:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache_home)}
    result = subprocess.run([sys.executable, "-c", CHILD, str(folder), str(steps), str(size)], env=env,
                            capture_output=True, text=True, check=True)  # fmt: skip
    return {line.split()[0]: json.loads(line.split(maxsplit=1)[1]) for line in result.stdout.splitlines()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=300_000)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/photos-300k"))
    parser.add_argument("--cache-home", type=Path, default=Path("/tmp/photos-300k-cache"))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    print(f"writing {args.photos:,} synthetic photos into {args.folder} (once)", flush=True)
    write_photos(args.folder, args.photos)
    started = time.perf_counter()
    build = run_child(args.folder, 0, args.size, args.cache_home)
    build_seconds = time.perf_counter() - started
    train = run_child(args.folder, args.steps, args.size, args.cache_home)
    cache_bytes = sum(p.stat().st_size for p in args.cache_home.rglob("images.u8"))
    print(f"\n{args.photos:,} photos at {args.size}x{args.size} RGB; cache files {cache_bytes / 2**30:.2f} GiB "
          f"(what holding the arrays in memory would take)")  # fmt: skip
    print(f"{'process':<52}{'peak resident (VmHWM)':>24}{'resident at end':>18}")
    print(f"{f'decode into the cache ({build_seconds:.0f} s)':<52}{build['loaded']['VmHWM']:>20,} MB"
          f"{build['loaded']['VmRSS']:>14,} MB")  # fmt: skip
    print(f"{f'load the cache, train {args.steps} steps of 128':<52}{train['trained']['VmHWM']:>20,} MB"
          f"{train['trained']['VmRSS']:>14,} MB")  # fmt: skip


if __name__ == "__main__":
    main()
