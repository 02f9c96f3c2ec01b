"""Where the MNIST-family datasets come from: file names, checksums, mirrors."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from types import MappingProxyType

# The four standard IDX file names (each may also be stored as NAME.gz).
IDX_FILES: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    }
)
_ALL_FILES = frozenset(name for pair in IDX_FILES.values() for name in pair)
_MD5 = re.compile(r"[0-9a-f]{32}")
_NAME = re.compile(r"[a-z0-9_]+")


@dataclasses.dataclass(frozen=True, kw_only=True)
class IdxSource:
    """An MNIST-style dataset: four IDX files, their checksums and mirrors.

    Args:
      name: the dataset's name, also the subdirectory it is looked up in
        under ``$JAXZIP_DATA_DIR`` and the cache (lowercase letters, digits, ``_``).
      md5s: for each of the four standard file names (without ``.gz``), the
        hex MD5 of its *decompressed* content. A mapping is accepted and stored
        as sorted ``(name, md5)`` pairs.
      mirrors: base URLs (``http://`` or ``https://``) holding ``NAME.gz``,
        tried in order.
      image_shape: the (height, width) every image must have.
      num_classes: labels must lie in [0, num_classes).

    Raises:
      ValueError: a field is malformed; the message names it.

    Example:
      >>> MNIST.name, MNIST.image_shape, MNIST.num_classes
      ('mnist', (28, 28), 10)
      >>> MNIST.md5("t10k-labels-idx1-ubyte")
      '27ae3e4e09519cfbb04c329615203637'
    """

    name: str
    md5s: tuple[tuple[str, str], ...]
    mirrors: tuple[str, ...]
    image_shape: tuple[int, int] = (28, 28)
    num_classes: int = 10

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ValueError(
                f"IdxSource: name must be lowercase letters, digits and '_', got {self.name!r}"
            )
        md5s = dict(self.md5s.items() if isinstance(self.md5s, Mapping) else self.md5s)
        if set(md5s) != _ALL_FILES:
            raise ValueError(
                f"IdxSource {self.name!r}: md5s must have exactly the keys "
                f"{sorted(_ALL_FILES)}, got {sorted(md5s)}"
            )
        for file, digest in md5s.items():
            if not isinstance(digest, str) or not _MD5.fullmatch(digest):
                raise ValueError(
                    f"IdxSource {self.name!r}: md5s[{file!r}] must be 32 lowercase hex "
                    f"digits, got {digest!r}"
                )
        object.__setattr__(self, "md5s", tuple(sorted(md5s.items())))
        if isinstance(self.mirrors, str):
            raise ValueError(
                f"IdxSource {self.name!r}: mirrors must be a sequence of URLs, got a str"
            )
        mirrors = tuple(self.mirrors)
        for url in mirrors:
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise ValueError(
                    f"IdxSource {self.name!r}: each mirror must be an http:// or https:// "
                    f"URL, got {url!r}"
                )
        object.__setattr__(self, "mirrors", mirrors)
        shape = tuple(self.image_shape)
        if len(shape) != 2 or not all(isinstance(d, int) and d > 0 for d in shape):
            raise ValueError(
                f"IdxSource {self.name!r}: image_shape must be two positive ints, "
                f"got {self.image_shape!r}"
            )
        object.__setattr__(self, "image_shape", shape)
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int):
            raise ValueError(
                f"IdxSource {self.name!r}: num_classes must be an int, got {self.num_classes!r}"
            )
        if not 1 <= self.num_classes <= 256:
            raise ValueError(
                f"IdxSource {self.name!r}: num_classes must lie in [1, 256], got {self.num_classes}"
            )

    def md5(self, file: str) -> str:
        """The expected MD5 of the decompressed content of ``file``."""
        return dict(self.md5s)[file]


MNIST = IdxSource(
    name="mnist",
    # MD5s of the decompressed files, as published with the original archives.
    md5s={
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
)

FASHION_MNIST = IdxSource(
    name="fashion_mnist",
    # MD5s of the decompressed files. Zalando publishes only the MD5s of the .gz
    # files (train-images 8d4fb7e6c68d591d4c3dfef9ec88bf0d, train-labels
    # 25c81989df183df01b3e8a0aad5dffbe, t10k-images bef4ecab320f06d8554ea6380940ec79,
    # t10k-labels bb300cfdad3c16e7a12a480ee83cd310, as in torchvision); these are
    # the MD5s of those files once decompressed, as listed by torchvision-style
    # loaders (a ``raw_data`` table) and by `md5sum` after `gunzip` of the official
    # files. Verifying decompressed content accepts re-compressed copies too.
    md5s={
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
)
