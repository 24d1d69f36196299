"""`get_source`: one entry point from a dataset name to a random-access data source.

kd_jax's own builders (offline package data and manual-download audio datasets) and the standard
TFDS catalogue (`cifar10`, `glue/sst2`, `imagenet2012`, ...) are all prepared once into a TFDS
`data_dir` in the `array_record` format and read with `builder.as_data_source(split)`: random
access by index, which is what grain needs for global shuffling, sharding and exact resumption.
No TensorFlow is involved in reading.
"""

from __future__ import annotations

import importlib
import os
import pathlib
import socket
from typing import Any, Callable, Mapping

import numpy as np
import tensorflow_datasets as tfds

from kd_jax.data import user_data
from kd_jax.data.builders import bbc_news
from kd_jax.data.builders import idx_images
from kd_jax.data.builders import mnist5k
from kd_jax.data.builders import rotten_tomatoes

DATA_DIR_ENV = "KD_JAX_DATA_DIR"


class DatasetUnavailableError(RuntimeError):
  """The dataset is neither prepared in `data_dir` nor preparable here."""


def _builders() -> dict[str, Callable[..., tfds.core.DatasetBuilder]]:
  """Public name -> factory(data_dir, manual_dir, config) for kd_jax's own builders."""

  def plain(cls):
    return lambda data_dir, manual_dir, config: cls(data_dir=data_dir)

  def manual(class_name):
    def make(data_dir, manual_dir, config):
      # Audio builders need soundfile/scipy; import them only when an audio dataset is asked for.
      from kd_jax.data.builders import audio_datasets  # pylint: disable=g-import-not-at-top

      return getattr(audio_datasets, class_name)(
          data_dir=data_dir, config=config, manual_dir=manual_dir
      )

    return make

  return {
      "fashion_mnist": lambda data_dir, manual_dir, config: idx_images.FashionMnist(
          data_dir=data_dir, idx_dir=manual_dir
      ),
      "mnist5k": plain(mnist5k.Mnist5k),
      "rotten_tomatoes": plain(rotten_tomatoes.RottenTomatoes),
      "bbc_news": plain(bbc_news.BbcNews),
      "urbansound8k": manual("UrbanSound8k"),
      "esc50": manual("Esc50"),
      "sonyc_ust": manual("SonycUst"),
      "sonic_pi": _sonic_pi,
  }


def _sonic_pi(data_dir, manual_dir, config):
  """The offline Sonic Pi corpus; written once into data_dir/manual/sonic_pi unless given."""
  from kd_jax.data import offline_audio  # pylint: disable=g-import-not-at-top

  if manual_dir is None:
    manual_dir = pathlib.Path(data_dir) / "manual" / "sonic_pi"
    if not (manual_dir / "metadata" / "UrbanSound8K.csv").exists():
      offline_audio.write_sonic_pi_corpus(manual_dir)
  return offline_audio.SonicPi(data_dir=data_dir, config=config, manual_dir=manual_dir)


def default_data_dir() -> str:
  """$KD_JAX_DATA_DIR if set, else TFDS's default (~/tensorflow_datasets)."""
  return os.environ.get(DATA_DIR_ENV) or os.path.expanduser("~/tensorflow_datasets")


class DataSource:
  """A TFDS array_record data source whose records come back as NumPy values and `str` text.

  TFDS returns `Text` features as UTF-8 `bytes` and scalars as Python numbers; the rest of kd_jax
  wants `str` (tokenisers) and NumPy (batching), so records are converted here, once.
  """

  def __init__(self, tfds_source, info: tfds.core.DatasetInfo, split: str):
    self._source = tfds_source
    self.info = info
    self.split = split
    features = info.features
    self._text_keys = {k for k, f in features.items() if isinstance(f, tfds.features.Text)}

  def __len__(self) -> int:
    return len(self._source)

  def _convert(self, record: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in record.items():
      if key in self._text_keys or isinstance(value, bytes):
        out[key] = value.decode("utf-8") if isinstance(value, bytes) else str(value)
      else:
        out[key] = np.asarray(value)
    return out

  def __getitem__(self, index: int) -> dict[str, Any]:
    if not isinstance(index, (int, np.integer)):
      raise TypeError(f"DataSource index must be an int, got {type(index).__name__}.")
    if not -len(self) <= index < len(self):
      raise IndexError(
          f"index {index} out of range for {self.info.name}[{self.split}] of "
          f"length {len(self)}."
      )
    return self._convert(self._source[int(index) % len(self)])

  def __getitems__(self, indices) -> list[dict[str, Any]]:
    # Batched reads let array_record fetch several records in one call (grain uses this).
    return [self._convert(r) for r in self._source.__getitems__([int(i) for i in indices])]

  @property
  def num_classes(self) -> int | None:
    label = self.info.features["label"] if "label" in self.info.features else None
    return getattr(label, "num_classes", None)

  @property
  def label_names(self) -> tuple[str, ...] | None:
    """Class names of index 0, 1, ... when the label is a named `ClassLabel`."""
    label = self.info.features["label"] if "label" in self.info.features else None
    names = getattr(label, "names", None)
    return tuple(names) if names and not all(n == str(i) for i, n in enumerate(names)) else None

  def __repr__(self) -> str:
    return f"DataSource({self.info.name}[{self.split}], {len(self)} records)"


def _prepare(builder, name: str, manual_dir) -> None:
  download_config = tfds.download.DownloadConfig(manual_dir=str(manual_dir) if manual_dir else None)
  builder.download_and_prepare(file_format="array_record", download_config=download_config)


# TFDS finds new-style builders (tensorflow_datasets/datasets/<name>/) lazily, but legacy ones
# such as glue only register when their category package is imported.
_LEGACY_CATEGORIES = (
    "text",
    "image_classification",
    "image",
    "audio",
    "video",
    "structured",
    "question_answering",
    "translate",
    "summarization",
    "object_detection",
    "vision_language",
    "graphs",
    "time_series",
    "recommendation",
)


def _tfds_builder(name: str, data_dir: str):
  try:
    return tfds.builder(name, data_dir=data_dir, file_format="array_record")
  except tfds.core.registered.DatasetNotFoundError:
    for category in _LEGACY_CATEGORIES:
      try:
        importlib.import_module(f"tensorflow_datasets.{category}")
      except Exception:  # pylint: disable=broad-except  # Some categories need TensorFlow.
        continue
    return tfds.builder(name, data_dir=data_dir, file_format="array_record")


def _internet_reachable(host: str = "storage.googleapis.com", timeout: float = 3.0) -> bool:
  """A quick TCP probe, so offline machines fail in seconds instead of minutes of TFDS retries."""
  try:
    with socket.create_connection((host, 443), timeout=timeout):
      return True
  except OSError:
    return False


def _standard_builder(name: str, data_dir: str, *, download: bool, manual_dir):
  """Prepares (if allowed) and returns a builder from TFDS's own catalogue."""
  how = (
      f"Prepare it where the internet (and, for image/audio datasets, TensorFlow) is available: "
      f"`tfds build {name} --file_format=array_record --data_dir=DIR` (for manual-download "
      f"datasets such as imagenet2012 add --manual_dir=WHERE_THE_ARCHIVES_ARE), then copy DIR "
      f"here and pass data_dir=DIR or set ${DATA_DIR_ENV}=DIR. A dataset already prepared as "
      f"tfrecord can be converted with `tfds convert_format --dataset_dir=... "
      f"--out_file_format=array_record`."
  )
  try:
    builder = _tfds_builder(name, data_dir)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise KeyError(
        f"Unknown dataset {name!r}: neither a kd_jax dataset "
        f"({sorted(_builders())}) nor in the TFDS catalogue."
    ) from e
  if builder.is_prepared():
    return builder
  if download is None and not _internet_reachable():
    raise DatasetUnavailableError(
        f"TFDS dataset {name!r} is not prepared in {data_dir} and this machine has no internet "
        f"connection to download it. {how}"
    )
  if download is False:
    raise DatasetUnavailableError(
        f"TFDS dataset {name!r} is not prepared in {data_dir} and download=False. {how}"
    )
  try:
    _prepare(builder, name, manual_dir)
  except Exception as e:  # Network, manual-dir and TensorFlow-encoding failures all end here.
    raise DatasetUnavailableError(
        f"TFDS dataset {name!r} is not prepared in {data_dir} and could not be prepared here "
        f"({type(e).__name__}: {str(e)[:300]}). {how}"
    ) from e
  return builder


def get_builder(name: str, *, data_dir=None, manual_dir=None, download: bool | None = None):
  """Returns a prepared TFDS builder for `name` ("dataset" or "dataset/config")."""
  data_dir = str(data_dir or default_data_dir())
  base_name, _, config = name.partition("/")
  factories = _builders()
  if base_name not in factories:
    return _standard_builder(name, data_dir, download=download, manual_dir=manual_dir)
  builder = factories[base_name](data_dir, manual_dir, config or None)
  if not builder.is_prepared():
    try:
      _prepare(builder, name, manual_dir)
    except OSError:
      # Another process may have finished preparing the same data_dir first (TFDS renames its
      # temporary directory into place); then its result is as good as ours.
      builder = factories[base_name](data_dir, manual_dir, config or None)
      if not builder.is_prepared():
        raise
  return builder


def get_source(
    name: str, split: str, *, data_dir=None, manual_dir=None, download: bool | None = None
) -> DataSource:
  """Random-access source of `split` of dataset `name`, preparing it into `data_dir` once.

  Args:
    name: a user file "csv:PATH?text=COL&label=COL" (also tsv:, jsonl:, parquet:; see
      `kd_jax.data.user_data`), a name given to `register_source`, "package.module:function"
      (called as function(split, data_dir=..., manual_dir=...)), a kd_jax dataset
      ("fashion_mnist", "mnist5k", "rotten_tomatoes", "bbc_news", "urbansound8k", "esc50",
      "sonyc_ust", "sonic_pi"; audio ones take a config "/48k" (default), "/8k" or "/native")
      or any TFDS catalogue name ("cifar10", "glue/sst2", "imagenet2012", ...).
    split: a TFDS split expression ("train", "test", "train[:10%]", "fold1+fold2", ...).
    data_dir: where prepared datasets live; default $KD_JAX_DATA_DIR or ~/tensorflow_datasets.
    manual_dir: the official archive layout of a manual-download dataset (audio datasets,
      imagenet2012), or the IDX directory for fashion_mnist.
    download: for TFDS catalogue datasets, whether a missing dataset may be downloaded; None
      (default) downloads only when the internet is reachable, so offline machines fail fast.

  Returns:
    A `DataSource`: `len()`, `source[i]` -> dict of NumPy values (text as `str`), `.info`
    (a `UserSource` for user files, whatever the function returns for the other two).
  """
  if user_data.is_user_file(name):
    return user_data.get_user_source(name, split)
  registered = user_data.registered(name)
  if registered is None and ":" in name:
    module_name, _, attribute = name.partition(":")
    try:
      module = importlib.import_module(module_name)
    except ImportError as error:
      raise ValueError(
          f"Cannot import {name!r} (a dataset given as 'package.module:function'): " f"{error}"
      ) from error
    registered = getattr(module, attribute, None)
    if not callable(registered):
      raise ValueError(f"Dataset {name!r}: {module_name} has no callable {attribute!r}.")
  if registered is not None:
    return registered(split, data_dir=data_dir, manual_dir=manual_dir)
  builder = get_builder(name, data_dir=data_dir, manual_dir=manual_dir, download=download)
  available = set(builder.info.splits)
  try:
    tfds_source = builder.as_data_source(split=split)
  except (ValueError, KeyError) as e:
    raise ValueError(
        f"Bad split {split!r} for {name!r}; available splits: " f"{sorted(available)}."
    ) from e
  except NotImplementedError as e:  # Prepared, but as tfrecord: no random access.
    raise DatasetUnavailableError(
        f"{name!r} in {builder.data_dir} is stored as {builder.info.file_format}, which has no "
        f"random access; convert it once with `tfds convert_format --dataset_version_dir="
        f"{builder.data_dir} --out_file_format=array_record`."
    ) from e
  return DataSource(tfds_source, builder.info, split)
