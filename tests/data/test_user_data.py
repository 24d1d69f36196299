"""User data: `get_source("csv:PATH?...")`, JSON lines, splits, label names, registered sources."""

import csv
import json

import numpy as np
import pytest

from kd_jax import data
from kd_jax.data import user_data


def _write_csv(path, rows, header=("review", "sentiment")):
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows(rows)
  return str(path)


@pytest.fixture
def reviews(tmp_path):
  labels = ["pos", "neg", "neutral"]
  rows = [(f"review number {i}", labels[i % 3]) for i in range(100)]
  return _write_csv(tmp_path / "reviews.csv", rows)


def test_csv_with_string_labels_random_split(reviews):
  spec = f"csv:{reviews}?text=review&label=sentiment"
  train, val, test = (data.get_source(spec, s) for s in ("train", "validation", "test"))
  assert (len(train), len(val), len(test)) == (80, 10, 10)
  assert train.label_names == ("neg", "neutral", "pos") and train.num_classes == 3
  record = train[0]
  assert set(record) == {"text", "label"} and record["text"].startswith("review number")
  number = int(record["text"].split()[-1])
  assert train.label_names[record["label"]] == ["pos", "neg", "neutral"][number % 3]
  # Deterministic and disjoint.
  texts = lambda source: {source[i]["text"] for i in range(len(source))}
  assert texts(train) == texts(data.get_source(spec, "train"))
  assert not texts(train) & texts(test) and not texts(val) & texts(test)
  assert len(data.get_source(spec, "train[:25%]")) == 20
  assert len(data.get_source(spec, "train[:5]+test")) == 15


def test_split_column_and_integer_labels(tmp_path):
  path = _write_csv(
      tmp_path / "d.csv",
      [("a b", 1, "train"), ("c", 0, "train"), ("d", 2, "test")],
      header=("text", "label", "split"),
  )
  train = data.get_source(f"csv:{path}", "train")
  assert len(train) == 2 and train.label_names is None and train.num_classes == 3
  assert [train[i]["label"] for i in range(2)] == [1, 0]
  with pytest.raises(ValueError, match=r"no rows in split 'validation'.*\['test', 'train'\]"):
    data.get_source(f"csv:{path}", "validation")


def test_jsonl_features_and_given_label_order(tmp_path):
  path = tmp_path / "d.jsonl"
  with open(path, "w") as f:
    for i in range(20):
      f.write(json.dumps({"x1": i, "x2": -i, "y": "big" if i > 9 else "small"}) + "\n")
  source = data.get_source(
      f"jsonl:{path}?features=x*&label=y&labels=small,big&split=random", "train"
  )
  record = source[0]
  assert record["features"].dtype == np.float32 and record["features"].shape == (2,)
  assert record["label"] == (1 if record["features"][0] > 9 else 0)
  assert source.label_names == ("small", "big")


@pytest.mark.parametrize(
    "spec_tail, message",
    [
        ("?text=body&label=sentiment", r"has no column 'body' \(given as text=\).*'review'"),
        ("?text=review", r"has no column 'label'"),
        ("?text=review&label=sentiment&labels=pos,neg", r"not in labels=pos,neg"),
        ("?txt=review", r"unknown option\(s\) \['txt'\]"),
        ("?text=review&label=sentiment&fractions=0.5,0.5", "three numbers"),
    ],
)
def test_clear_errors(reviews, spec_tail, message):
  with pytest.raises(data.UserDataError, match=message):
    data.get_source(f"csv:{reviews}{spec_tail}", "train")


def test_non_integer_labels_are_refused(tmp_path):
  path = _write_csv(tmp_path / "d.csv", [("a", "0.5"), ("b", "1")], header=("text", "label"))
  with pytest.raises(data.UserDataError, match=r"non-integer values such as '0.5'"):
    data.get_source(f"csv:{path}", "train")


def test_missing_file_says_so(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    data.get_source(f"csv:{tmp_path}/nope.csv", "train")


def test_register_source_and_module_function():
  def tiny(split, *, data_dir=None, manual_dir=None):
    del data_dir, manual_dir
    return [{"image": np.zeros((2, 2, 1), np.uint8), "label": 1}] * (3 if split == "train" else 1)

  data.register_source("tiny_for_test", tiny)
  assert len(data.get_source("tiny_for_test", "train")) == 3
  source = data.get_source("tests.data.test_user_data:module_level_source", "test")
  assert len(source) == 2
  with pytest.raises(ValueError, match="plain word"):
    data.register_source("csv:x", tiny)


def module_level_source(split, *, data_dir=None, manual_dir=None):
  del split, data_dir, manual_dir
  return [{"features": np.zeros(3, np.float32), "label": 0}] * 2


def test_label_names_round_trip_through_a_workdir(reviews, tmp_path):
  source = data.get_source(f"csv:{reviews}?text=review&label=sentiment", "train")
  user_data.write_label_names(source, str(tmp_path / "run"))
  assert user_data.read_label_names(str(tmp_path / "run")) == ("neg", "neutral", "pos")
  assert user_data.read_label_names(str(tmp_path)) is None


def test_integral_float_labels_are_class_ids(tmp_path):
  path = tmp_path / "d.jsonl"
  path.write_text(
      "".join(json.dumps({"text": t, "label": float(i % 2)}) + "\n" for i, t in enumerate("abcd"))
  )
  source = data.get_source(f"jsonl:{path}?split=random&fractions=1,0,0", "train")
  assert sorted(source[i]["label"] for i in range(4)) == [0, 0, 1, 1]
  assert source.label_names is None and source.num_classes == 2
