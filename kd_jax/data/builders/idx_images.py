"""IDX image datasets (the official MNIST / Fashion-MNIST file format) as a TFDS builder.

IDX layout (LeCun et al., http://yann.lecun.com/exdb/mnist/): a big-endian header
`0x00 0x00 <dtype code> <ndim>` followed by `ndim` big-endian uint32 sizes, then the row-major
payload. Images are `[N, 28, 28]` uint8 (magic 0x00000803), labels `[N]` uint8 (0x00000801).
Files may be gzip-compressed, as the Debian `dataset-fashion-mnist` package ships them.
"""

from __future__ import annotations

import gzip
import os
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from kd_jax.data.builders import base

DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

# IDX dtype codes -> NumPy big-endian dtypes.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
  """Reads one IDX file (optionally .gz) into a NumPy array with the header's shape."""
  path = pathlib.Path(path)
  opener = gzip.open if path.suffix == ".gz" else open
  with opener(path, "rb") as f:
    raw = f.read()
  if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
    raise ValueError(f"{path} is not an IDX file (header bytes {raw[:4]!r}).")
  dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
  shape = tuple(int(s) for s in np.frombuffer(raw, ">u4", count=ndim, offset=4))
  payload_offset = 4 + 4 * ndim
  expected = int(np.prod(shape)) * dtype.itemsize
  if len(raw) - payload_offset != expected:
    raise ValueError(
        f"{path}: header says shape {shape} ({expected} bytes of data) but the file "
        f"holds {len(raw) - payload_offset} bytes."
    )
  values = np.frombuffer(raw, dtype, offset=payload_offset).reshape(shape)
  return values.astype(dtype.newbyteorder("="))  # Native byte order for NumPy / JAX.


def _find(directory: pathlib.Path, stem: str) -> pathlib.Path:
  for name in (stem + ".gz", stem):
    if (directory / name).exists():
      return directory / name
  raise FileNotFoundError(
      f"IDX file {stem}(.gz) not found in {directory}. For Fashion-MNIST install the Debian "
      f"package: apt-get install dataset-fashion-mnist (files land in {DEBIAN_FASHION_MNIST_DIR}), "
      f"or pass idx_dir= a directory holding the four official IDX files."
  )


def load_idx_split(directory: str | os.PathLike, prefix: str) -> tuple[np.ndarray, np.ndarray]:
  """Returns (images [N, H, W] uint8, labels [N] int64) for prefix "train" or "t10k"."""
  directory = pathlib.Path(directory)
  images = read_idx(_find(directory, f"{prefix}-images-idx3-ubyte"))
  labels = read_idx(_find(directory, f"{prefix}-labels-idx1-ubyte")).astype(np.int64)
  if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
    raise ValueError(
        f"{directory}/{prefix}: images {images.shape} and labels {labels.shape} do "
        "not pair up as [N, H, W] and [N]."
    )
  return images, labels


class IdxImages(base.KdBuilder):
  """Grayscale IDX image classification (Fashion-MNIST by default) as {"image", "label"}."""

  VERSION = tfds.core.Version("1.0.0")
  SUPERVISED_KEYS = ("image", "label")
  CLASS_NAMES = FASHION_MNIST_CLASSES
  DEFAULT_DIR = DEBIAN_FASHION_MNIST_DIR
  IMAGE_SHAPE = (28, 28, 1)
  DESCRIPTION = (
      "Fashion-MNIST (Xiao et al., 2017): 60 000 train / 10 000 test 28x28 grayscale "
      "Zalando article images, 10 classes, read from the official IDX files."
  )
  HOMEPAGE = "https://github.com/zalandoresearch/fashion-mnist"

  def __init__(self, *, idx_dir: str | os.PathLike | None = None, **kwargs):
    self._idx_dir = pathlib.Path(idx_dir or self.DEFAULT_DIR)
    super().__init__(**kwargs)

  def _features(self):
    return {
        "image": tfds.features.Tensor(shape=self.IMAGE_SHAPE, dtype=np.uint8),
        "label": tfds.features.ClassLabel(names=self.CLASS_NAMES),
    }

  def _split_generators(self, dl_manager):
    del dl_manager  # Reads local files only.
    return {"train": self._generate_examples("train"), "test": self._generate_examples("t10k")}

  def _generate_examples(self, prefix):
    images, labels = load_idx_split(self._idx_dir, prefix)
    images = images.reshape((len(images),) + self.IMAGE_SHAPE)
    for index, (image, label) in enumerate(zip(images, labels)):
      yield index, {"image": image, "label": int(label)}


class FashionMnist(IdxImages):
  name = "kd_fashion_mnist"
