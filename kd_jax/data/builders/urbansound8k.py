"""UrbanSound8K (Salamon, Jacoby & Bello, ACM MM 2014) from its official archive layout.

manual_dir/
  metadata/UrbanSound8K.csv   slice_file_name, fsID, start, end, salience, fold, classID, class
  audio/fold1 ... audio/fold10/<slice_file_name>

8 732 slices of <= 4 s in 10 classes. The authors require 10-fold cross-validation over the
official folds (slices of one recording share a fold), so the TFDS splits are the folds:
"fold1" ... "fold10"; train on e.g. "fold1+...+fold9" and test on "fold10".
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from kd_jax.data.builders import audio_base

CLASSES = (
    "air_conditioner",
    "car_horn",
    "children_playing",
    "dog_bark",
    "drilling",
    "engine_idling",
    "gun_shot",
    "jackhammer",
    "siren",
    "street_music",
)
NUM_FOLDS = 10


class UrbanSound8k(audio_base.ManualAudioBuilder):
  """{"audio", "sample_rate", "label" (classID), "fold" (1..10), "salience", "fs_id", ...}."""

  name = "kd_urbansound8k"
  CLASSES = CLASSES
  VERSION = tfds.core.Version("1.0.0")
  METADATA_FILE = "metadata/UrbanSound8K.csv"
  REQUIRED_COLUMNS = ("slice_file_name", "fsID", "salience", "fold", "classID", "class")
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "the extracted UrbanSound8K.tar.gz from https://urbansounddataset.weebly.com/"
      "urbansound8k.html: metadata/UrbanSound8K.csv and audio/fold1 ... audio/fold10."
  )
  DESCRIPTION = "UrbanSound8K: 8 732 labelled urban sound slices (<= 4 s), 10 classes, 10 folds."
  HOMEPAGE = "https://urbansounddataset.weebly.com/urbansound8k.html"
  CITATION = (
      "Salamon, Jacoby and Bello. A dataset and taxonomy for urban sound research. " "ACM MM 2014."
  )

  def _features(self):
    return {
        **self.audio_features(),
        "label": tfds.features.ClassLabel(names=self.CLASSES),
        "fold": tfds.features.Tensor(shape=(), dtype=np.int32),
        "salience": tfds.features.Tensor(shape=(), dtype=np.int32),
        "fs_id": tfds.features.Tensor(shape=(), dtype=np.int64),
    }

  def _split_generators(self, dl_manager):
    del dl_manager
    rows = self.read_metadata()
    for row in rows:
      class_id = int(row["classID"])
      if (
          not 1 <= int(row["fold"]) <= NUM_FOLDS
          or not 0 <= class_id < len(self.CLASSES)
          or self.CLASSES[class_id] != row["class"]
      ):
        raise ValueError(
            f"{self.METADATA_FILE}: bad row {row} (fold must be 1..10 and classID "
            f"must match class in {self.CLASSES})."
        )
    return {
        f"fold{k}": self._generate_examples([r for r in rows if int(r["fold"]) == k])
        for k in range(1, NUM_FOLDS + 1)
    }

  def _generate_examples(self, rows):
    for row in rows:
      path = self.root / "audio" / f"fold{int(row['fold'])}" / row["slice_file_name"]
      clip, rate = self.load_clip(path)
      yield row["slice_file_name"], {
          "audio": clip,
          "sample_rate": rate,
          "filename": row["slice_file_name"],
          "label": int(row["classID"]),
          "fold": int(row["fold"]),
          "salience": int(row["salience"]),
          "fs_id": int(row["fsID"]),
      }
