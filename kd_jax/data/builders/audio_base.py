"""Shared machinery of the manual-download audio builders (UrbanSound8K, ESC-50, SONYC-UST).

The user downloads a dataset's official archives and extracts them into `manual_dir`; the builder
reads the official metadata file, decodes every clip to mono float32 at the configured rate (the
"48k" config for L3-style teachers, "8k" for small students, "native" keeps each file's rate) and
stores it as array_record. Metadata and rows are checked so that a wrong directory fails with a
message saying what is missing.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from kd_jax.data import audio
from kd_jax.data.builders import base


@dataclasses.dataclass(eq=False)
class AudioConfig(tfds.core.BuilderConfig):
  sample_rate: int | None = 48000  # None: keep each file's own rate.


AUDIO_CONFIGS = [
    AudioConfig(name="48k", sample_rate=48000, description="mono, resampled to 48 kHz"),
    AudioConfig(name="8k", sample_rate=8000, description="mono, resampled to 8 kHz"),
    AudioConfig(name="native", sample_rate=None, description="mono, each file's own rate"),
]


class ManualAudioBuilder(base.KdBuilder):
  """Base: `manual_dir` holds the official layout; subclasses read its metadata."""

  BUILDER_CONFIGS = AUDIO_CONFIGS
  METADATA_FILE = ""  # Relative to manual_dir; checked before anything else.
  REQUIRED_COLUMNS: tuple[str, ...] = ()

  def __init__(self, *, manual_dir: str | os.PathLike | None = None, **kwargs):
    self._manual_dir = pathlib.Path(manual_dir) if manual_dir else None
    super().__init__(**kwargs)

  @property
  def root(self) -> pathlib.Path:
    if self._manual_dir is None:
      raise FileNotFoundError(
          f"{self.name} is a manual-download dataset: pass manual_dir= the folder holding "
          f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}"
      )
    metadata = self._manual_dir / self.METADATA_FILE
    if not metadata.exists():
      raise FileNotFoundError(
          f"{metadata} not found: manual_dir must hold the official {self.name} layout, "
          f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}"
      )
    return self._manual_dir

  def read_metadata(self) -> list[dict[str, str]]:
    path = self.root / self.METADATA_FILE
    with open(path, newline="", encoding="utf-8") as f:
      reader = csv.DictReader(f)
      missing = set(self.REQUIRED_COLUMNS) - set(reader.fieldnames or ())
      if missing:
        raise ValueError(f"{path} lacks the columns {sorted(missing)} of the official format.")
      return list(reader)

  def load_clip(self, path: pathlib.Path) -> tuple[np.ndarray, int]:
    if not path.exists():
      raise FileNotFoundError(
          f"{self.name}: audio file {path} listed in the metadata is "
          f"missing; is the archive fully extracted into {self.root}?"
      )
    return audio.decode_audio(path, sample_rate=self.builder_config.sample_rate)

  def audio_features(self) -> dict:
    return {
        "audio": tfds.features.Tensor(shape=(None,), dtype=np.float32),
        "sample_rate": tfds.features.Tensor(shape=(), dtype=np.int32),
        "filename": tfds.features.Text(),
    }
