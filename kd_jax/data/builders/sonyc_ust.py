"""SONYC-UST v2 (Cartwright et al., DCASE 2019 / 2020) from its official Zenodo layout.

manual_dir/
  annotations.csv   one row per (recording, annotator): split, sensor_id, audio_filename,
                    annotator_id, ..., "<c>_<coarse name>_presence" (1 / 0 / -1 = not annotated)
  audio/<audio_filename>   (the audio-*.tar.gz archives extract here)

Multi-label tagging of 8 coarse classes. Targets per recording, one 0/1 entry per class:
  * recordings with SONYC-verified ground truth (annotator_id == 0) use it;
  * otherwise the majority of the citizen-science volunteers (annotator_id > 0): present when at
    least half of them marked it (-1 entries, "not annotated", are ignored).
"agreement" keeps the volunteers' fraction per class for soft targets. The official split column
(train / validate / test, sensor-disjoint between train and validate) gives the TFDS splits
"train" / "validation" / "test" and is kept as "fold".
"""

from __future__ import annotations

import collections
import re

import numpy as np
import tensorflow_datasets as tfds

from kd_jax.data.builders import audio_base

COARSE_CLASSES = (
    "engine",
    "machinery-impact",
    "non-machinery-impact",
    "powered-saw",
    "alert-signal",
    "music",
    "human-voice",
    "dog",
)
_SPLITS = {"train": "train", "validate": "validation", "test": "test"}
_COARSE_COLUMN = re.compile(r"^(\d+)_([a-z-]+)_presence$")


def coarse_columns(fieldnames) -> list[str]:
  """The coarse presence columns in class-number order, checked against the official taxonomy."""
  found = sorted(
      (int(m.group(1)), m.group(2), name)
      for name in fieldnames
      if (m := _COARSE_COLUMN.match(name))
  )
  names = tuple(n for _, n, _ in found)
  if names != COARSE_CLASSES:
    raise ValueError(
        f"annotations.csv coarse columns {names} differ from the SONYC-UST "
        f"taxonomy {COARSE_CLASSES}."
    )
  return [column for _, _, column in found]


def aggregate(rows, columns) -> tuple[np.ndarray, np.ndarray, bool]:
  """(targets [8] float32 0/1, volunteer agreement [8] float32, verified) for one recording."""

  def presence(pool):
    values = np.array([[float(r[c]) for c in columns] for r in pool], np.float32)
    annotated = values >= 0
    counts = annotated.sum(0)
    return np.where(counts > 0, (values * annotated).sum(0) / np.maximum(counts, 1), 0.0)

  verified = [r for r in rows if int(r["annotator_id"]) == 0]
  volunteers = [r for r in rows if int(r["annotator_id"]) > 0]
  team = [r for r in rows if int(r["annotator_id"]) < 0]
  agreement = presence(volunteers or verified or team).astype(np.float32)
  targets = presence(verified or volunteers or team) >= 0.5
  return targets.astype(np.float32), agreement, bool(verified)


class SonycUst(audio_base.ManualAudioBuilder):
  """{"audio", "sample_rate", "label" [8] 0/1, "agreement" [8], "fold", "sensor_id", ...}."""

  name = "kd_sonyc_ust"
  VERSION = tfds.core.Version("1.0.0")
  METADATA_FILE = "annotations.csv"
  REQUIRED_COLUMNS = ("split", "sensor_id", "audio_filename", "annotator_id")
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "SONYC-UST v2 from https://zenodo.org/record/3966543: annotations.csv and the audio-*.tar.gz "
      "archives extracted into audio/."
  )
  DESCRIPTION = "SONYC-UST v2: 10 s urban recordings, multi-label tags of 8 coarse classes."
  HOMEPAGE = "https://zenodo.org/record/3966543"
  CITATION = (
      "Cartwright et al. SONYC-UST-V2: An urban sound tagging dataset with "
      "spatiotemporal context. DCASE 2020."
  )

  def _features(self):
    return {
        **self.audio_features(),
        "label": tfds.features.Tensor(shape=(len(COARSE_CLASSES),), dtype=np.float32),
        "agreement": tfds.features.Tensor(shape=(len(COARSE_CLASSES),), dtype=np.float32),
        "verified": tfds.features.Tensor(shape=(), dtype=np.bool_),
        "fold": tfds.features.Text(),
        "sensor_id": tfds.features.Tensor(shape=(), dtype=np.int64),
    }

  def _split_generators(self, dl_manager):
    del dl_manager
    rows = self.read_metadata()
    columns = coarse_columns(rows[0].keys() if rows else ())
    by_file = collections.defaultdict(list)
    for row in rows:
      if row["split"] not in _SPLITS:
        raise ValueError(
            f"annotations.csv: unknown split {row['split']!r} for "
            f"{row['audio_filename']}; expected one of {sorted(_SPLITS)}."
        )
      by_file[row["audio_filename"]].append(row)
    for name, file_rows in by_file.items():
      if len({r["split"] for r in file_rows}) != 1:
        raise ValueError(f"annotations.csv: {name} appears in several splits.")
    present = {r["split"] for r in rows}
    return {
        _SPLITS[s]: self._generate_examples(
            {n: r for n, r in sorted(by_file.items()) if r[0]["split"] == s}, columns
        )
        for s in _SPLITS
        if s in present
    }

  def _generate_examples(self, files, columns):
    for name, rows in files.items():
      clip, rate = self.load_clip(self.root / "audio" / name)
      targets, agreement, verified = aggregate(rows, columns)
      yield name, {
          "audio": clip,
          "sample_rate": rate,
          "filename": name,
          "label": targets,
          "agreement": agreement,
          "verified": verified,
          "fold": rows[0]["split"],
          "sensor_id": int(rows[0]["sensor_id"]),
      }
