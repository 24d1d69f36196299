"""The distillation corpus of CompRess: what "distill" holds, its prefixes, the task splits."""

import collections

import numpy as np
import pytest

from kd_jax.data import get_source
from kd_jax.data import text_corpus

CORPUS = "kd_jax.data.text_corpus:distillation_corpus"


def _texts(source):
  return [source[i]["text"] for i in range(len(source))]


def test_distill_is_the_shuffled_union_of_train_text_and_the_extras_without_labels():
  distill = get_source(CORPUS, "distill")
  train = _texts(get_source("rotten_tomatoes", "train")) + _texts(get_source("bbc_news", "train"))
  extras = text_corpus.extra_texts()
  assert len(distill) == len(train) + len(extras) == 17_161
  # The same texts, as a multiset (duplicates kept), and labels gone.
  assert collections.Counter(_texts(distill)) == collections.Counter(train + extras)
  assert set(distill[0]) == {"text"}
  # Shuffled: a prefix mixes review snippets with the rest (unshuffled, it would be all reviews).
  head = set(_texts(get_source(CORPUS, "distill[:200]")))
  assert head - set(_texts(get_source("rotten_tomatoes", "train")))
  assert _texts(get_source(CORPUS, "distill[:200]")) == _texts(distill)[:200]


def test_task_splits_are_the_labelled_datasets():
  for task, name in text_corpus.TASKS.items():
    ours = get_source(CORPUS, f"{task}/validation[:50]")
    theirs = get_source(name, "validation[:50]")
    assert len(ours) == len(theirs) == 50
    assert set(ours[0]) == {"text", "label"}
    view = text_corpus.TEXT_VIEWS.get(task, lambda text: text)
    for i in (0, 49):
      assert ours[i]["text"] == view(theirs[i]["text"])
      assert ours[i]["label"] == theirs[i]["label"] and ours[i]["label"].dtype == np.int64
    if task == "bbc_title":  # the article's first line only
      assert "\n" not in ours[0]["text"] and theirs[0]["text"].startswith(ours[0]["text"])
    # Records are copies: a transform adding keys does not change the source.
    ours[0]["input_ids"] = 1
    assert "input_ids" not in ours[0]


@pytest.mark.parametrize("split", ["distill[:x]", "distill[10:]", "train", "imdb/test", "bbc/"])
def test_unknown_splits_name_the_accepted_forms(split):
  with pytest.raises(ValueError, match="distillation_corpus"):
    get_source(CORPUS, split)
