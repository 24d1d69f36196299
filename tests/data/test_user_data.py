"""User data: `get_source("csv:PATH?...")`, JSON lines, splits, label names, registered sources,
compressed files (recognised by their first bytes) and text encodings."""

import bz2
import codecs
import csv
import gzip
import json
import lzma
import zipfile

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


def _compress(data: bytes, kind: str, path) -> None:
  if kind == "zip":
    with zipfile.ZipFile(path, "w") as archive:
      archive.writestr("reviews.csv", data)
    return
  path.write_bytes({"gz": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}[kind](data))


@pytest.mark.parametrize("kind", ["gz", "bz2", "xz", "zip"])
@pytest.mark.parametrize("suffix", ["named", "unnamed"])
def test_compressed_files_read_like_the_plain_one(reviews, tmp_path, kind, suffix):
  # Recognised by the first bytes: a compressed file still called reviews.csv reads too.
  path = tmp_path / (f"reviews.csv.{kind}" if suffix == "named" else "renamed.csv")
  with open(reviews, "rb") as f:
    _compress(f.read(), kind, path)
  records = lambda p: [
      data.get_source(f"csv:{p}?text=review&label=sentiment", "train")[i] for i in range(80)
  ]
  assert [(r["text"], r["label"]) for r in records(path)] == [
      (r["text"], r["label"]) for r in records(reviews)
  ]


def test_zip_must_hold_exactly_one_file(tmp_path):
  path = tmp_path / "two.zip"
  with zipfile.ZipFile(path, "w") as archive:
    archive.writestr("a.csv", "text,label\nx,0\n")
    archive.writestr("b.csv", "text,label\ny,1\n")
  with pytest.raises(data.UserDataError, match=r"zip archive of 2 files \(a.csv, b.csv\)") as error:
    data.get_source(f"csv:{path}", "train")
  assert "\n" not in str(error.value)


def test_truncated_gzip_says_so(tmp_path):
  path = tmp_path / "d.csv.gz"
  path.write_bytes(gzip.compress(b"text,label\n" + b"some words,1\n" * 200)[:60])
  with pytest.raises(data.UserDataError, match="starts like a gzip file but does not decompress"):
    data.get_source(f"csv:{path}", "train")


LATIN_1 = "text,label\nun film superbe,pos\nun caf\xe9 tr\xe8s ennuyeux,neg\n".encode("latin-1")


def test_latin1_file_is_one_line_naming_file_offset_and_option(tmp_path):
  path = tmp_path / "french.csv"
  path.write_bytes(LATIN_1)
  with pytest.raises(data.UserDataError) as error:
    data.get_source(f"csv:{path}", "train")
  message = str(error.value)
  offset = LATIN_1.index(b"\xe9")
  assert "\n" not in message and str(path) in message and "encoding=latin-1" in message
  assert f"0xe9 at byte offset {offset} (line 3) is not valid utf-8" in message, message
  source = data.get_source(f"csv:{path}?encoding=latin-1&split=random&fractions=1,0,0", "train")
  assert sorted(source[i]["text"] for i in range(2)) == ["un café très ennuyeux", "un film superbe"]


def test_latin1_inside_gzip_names_the_decompressed_offset(tmp_path):
  path = tmp_path / "french.csv.gz"
  path.write_bytes(gzip.compress(LATIN_1))
  with pytest.raises(
      data.UserDataError, match=r"byte offset \d+ \(line 3 of its gzip-decompressed"
  ):
    data.get_source(f"csv:{path}", "train")
  assert len(data.get_source(f"csv:{path}?encoding=latin-1&split=random", "train")) == 2


def test_byte_order_marks_are_not_part_of_the_header(tmp_path):
  text = "text,label\nbonjour,0\nhello,1\n"
  (tmp_path / "bom8.csv").write_bytes(codecs.BOM_UTF8 + text.encode())
  (tmp_path / "bom16.csv").write_bytes(text.encode("utf-16"))  # Excel's "Unicode text"
  for name in ("bom8.csv", "bom16.csv"):
    source = data.get_source(f"csv:{tmp_path / name}?split=random&fractions=1,0,0", "train")
    assert sorted(source[i]["text"] for i in range(2)) == ["bonjour", "hello"]


def test_unknown_encoding_is_one_line(reviews):
  with pytest.raises(data.UserDataError, match=r"unknown encoding='latin-9000'"):
    data.get_source(f"csv:{reviews}?text=review&label=sentiment&encoding=latin-9000", "train")
