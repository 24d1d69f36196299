"""ESC-50 (Piczak, ACM MM 2015) from its official repository layout.

manual_dir/
  meta/esc50.csv   filename, fold, target, category, esc10, src_file, take
  audio/<filename> 2 000 five-second clips, 44.1 kHz mono

50 classes, 40 clips each, 5 folds (clips from one source recording share a fold). The TFDS
splits are the folds "fold1" ... "fold5" for the official 5-fold cross-validation; "esc10" marks
the ESC-10 subset.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from kd_jax.data.builders import audio_base

NUM_FOLDS = 5
NUM_CLASSES = 50


class Esc50(audio_base.ManualAudioBuilder):
  """{"audio", "sample_rate", "label" (target 0..49), "category", "fold" (1..5), "esc10", ...}."""

  name = "kd_esc50"
  VERSION = tfds.core.Version("1.0.0")
  METADATA_FILE = "meta/esc50.csv"
  REQUIRED_COLUMNS = ("filename", "fold", "target", "category", "esc10", "src_file", "take")
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "a checkout / extracted archive of https://github.com/karolpiczak/ESC-50: meta/esc50.csv "
      "and audio/*.wav."
  )
  DESCRIPTION = "ESC-50: 2 000 environmental audio clips (5 s), 50 classes, 5 folds."
  HOMEPAGE = "https://github.com/karolpiczak/ESC-50"
  CITATION = "Piczak. ESC: Dataset for environmental sound classification. ACM MM 2015."

  def _features(self):
    return {
        **self.audio_features(),
        "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
        "category": tfds.features.Text(),
        "fold": tfds.features.Tensor(shape=(), dtype=np.int32),
        "esc10": tfds.features.Tensor(shape=(), dtype=np.bool_),
        "src_file": tfds.features.Text(),
    }

  def _split_generators(self, dl_manager):
    del dl_manager
    rows = self.read_metadata()
    for row in rows:
      if not 1 <= int(row["fold"]) <= NUM_FOLDS or not 0 <= int(row["target"]) < NUM_CLASSES:
        raise ValueError(f"{self.METADATA_FILE}: bad row {row} (fold 1..5, target 0..49).")
    return {
        f"fold{k}": self._generate_examples([r for r in rows if int(r["fold"]) == k])
        for k in range(1, NUM_FOLDS + 1)
    }

  def _generate_examples(self, rows):
    for row in rows:
      clip, rate = self.load_clip(self.root / "audio" / row["filename"])
      yield row["filename"], {
          "audio": clip,
          "sample_rate": rate,
          "filename": row["filename"],
          "label": int(row["target"]),
          "category": row["category"],
          "fold": int(row["fold"]),
          "esc10": row["esc10"].strip().lower() == "true",
          "src_file": row["src_file"],
      }
