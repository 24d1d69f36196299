"""Your own data in one config line: `dataset="csv:PATH?text=review&label=sentiment"`.

A user's labelled file (CSV, TSV, JSON lines, Parquet) becomes a random-access source with the
same records as the built-in datasets — {"text": str} or {"features": float32 [n]}, and
{"label": int} — so the trainer, the transforms (`Tokenize`) and the evaluators need nothing
new. The spec is `FORMAT:PATH[?OPTION=VALUE&...]`:

  text=COL[,COL2]    text column(s); several are joined with " [SEP] " (sentence pairs).
  features=COLS      numeric columns (comma separated, shell patterns such as `px*` allowed) read
                     as one float32 vector "features" (set the config's input_key="features").
  label=COL          the label column (default "label"): integer class ids, or class names.
  labels=A,B,C       the class names in index order (default: class names sorted; integer ids
                     are used as they are).
  split=COL          a column naming each row's split (default: the column "split" if present);
                     split=random draws one instead, seeded: rows are permuted with `seed` and
                     cut by `fractions` (train, validation, test; default 0.8,0.1,0.1).

Splits are then named as usual — "train", "validation", "test" — and sliced like TFDS splits
("train[:500]", "train[:10%]"). The class names are `source.label_names`; a trained workdir
keeps them in WORKDIR/labels.json (`write_label_names`), which `kd_jax.predict` uses to answer
with names.
"""

from __future__ import annotations

import csv
import fnmatch
import functools
import json
import os
import re
from typing import Any, Callable
from urllib.parse import parse_qsl

import numpy as np

FORMATS = ("csv", "tsv", "jsonl", "parquet")
LABELS_FILE = "labels.json"
_OPTIONS = ("text", "features", "label", "labels", "split", "fractions", "seed")
_SPLIT_NAMES = ("train", "validation", "test")
_REGISTRY: dict[str, Callable[..., Any]] = {}


class UserDataError(ValueError):
  """The file or its spec cannot be turned into a labelled source; the message says why."""


def register_source(name: str, fn: Callable[..., Any]) -> None:
  """Makes `get_source(name, split)` (and so `config.dataset = name`) call `fn`.

  `fn(split, *, data_dir=None, manual_dir=None)` returns a random-access source: `len()` and
  `source[i]` -> dict of NumPy values / str (optionally `num_classes`, `label_names`).
  """
  if not name or ":" in name or "/" in name:
    raise ValueError(f"register_source: name must be a plain word (no ':' or '/'), got {name!r}.")
  if not callable(fn):
    raise TypeError(
        f"register_source: {fn!r} is not callable as fn(split, data_dir=..., " "manual_dir=...)."
    )
  _REGISTRY[name] = fn


def registered(name: str) -> Callable[..., Any] | None:
  return _REGISTRY.get(name)


def is_user_file(name: str) -> bool:
  """True for "csv:PATH", "jsonl:PATH", ... (a user file, not a TFDS name or module path)."""
  scheme, sep, _ = name.partition(":")
  return bool(sep) and scheme.lower() in FORMATS


def parse_spec(spec: str) -> tuple[str, str, dict[str, str]]:
  """ "csv:data.csv?text=t&label=y" -> ("csv", absolute path, {"text": "t", "label": "y"})."""
  scheme, _, rest = spec.partition(":")
  path, _, query = rest.partition("?")
  options = dict(parse_qsl(query, keep_blank_values=True))
  unknown = sorted(set(options) - set(_OPTIONS))
  if unknown:
    raise UserDataError(f"{spec!r}: unknown option(s) {unknown}; known: {list(_OPTIONS)}.")
  if not path:
    raise UserDataError(f"{spec!r}: no file path after '{scheme}:'.")
  return scheme.lower(), os.path.abspath(os.path.expanduser(path)), options


def _read_rows(fmt: str, path: str) -> list[dict[str, Any]]:
  if not os.path.exists(path):
    raise FileNotFoundError(f"{fmt} file {path} does not exist.")
  if fmt in ("csv", "tsv"):
    with open(path, newline="", encoding="utf-8") as f:
      return list(csv.DictReader(f, delimiter="\t" if fmt == "tsv" else ","))
  if fmt == "jsonl":
    rows = []
    with open(path, encoding="utf-8") as f:
      for number, line in enumerate(f, 1):
        if line.strip():
          try:
            rows.append(json.loads(line))
          except json.JSONDecodeError as error:
            raise UserDataError(f"{path}, line {number}: not JSON ({error}).") from error
    return rows
  try:
    import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top
  except ImportError as error:
    raise UserDataError(f"Reading {path} needs pyarrow: pip install pyarrow.") from error
  return pq.read_table(path).to_pylist()


def _columns(rows, path: str) -> list[str]:
  if not rows:
    raise UserDataError(f"{path} holds no rows.")
  return list(rows[0].keys())


def _need(column: str, columns: list[str], path: str, option: str) -> str:
  if column not in columns:
    raise UserDataError(
        f"{path} has no column {column!r} (given as {option}=); its columns " f"are {columns}."
    )
  return column


def _is_number(text: str) -> bool:
  try:
    return np.isfinite(float(text))
  except ValueError:
    return False


def _encode_labels(
    values: list[str], given: str | None, path: str, column: str
) -> tuple[np.ndarray, tuple[str, ...] | None]:
  """Class ids [n] int64 and the class names (None when the file holds integer ids)."""
  for row, value in enumerate(values):
    if value == "":
      raise UserDataError(f"{path}: row {row + 1} has an empty label in column {column!r}.")
  if given:
    names = tuple(name.strip() for name in given.split(","))
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted(set(values) - set(index))
    if unknown:
      raise UserDataError(
          f"{path}: label(s) {unknown[:5]} of column {column!r} are not in "
          f"labels={','.join(names)}."
      )
    return np.array([index[v] for v in values], np.int64), names
  if all(_is_number(v) and float(v).is_integer() for v in values):  # 3, or 3.0 from a float column
    ids = np.array([int(float(v)) for v in values], np.int64)
    if ids.min() < 0:
      raise UserDataError(f"{path}: column {column!r} holds negative class ids ({ids.min()}).")
    return ids, None
  numbers = [v for v in values if _is_number(v)]
  if numbers:
    raise UserDataError(
        f"{path}: label column {column!r} holds non-integer values such as {numbers[0]!r}; a "
        f"label must be an integer class id or a class name (for names that look like numbers "
        f"give their order: labels=A,B,...)."
    )
  names = tuple(sorted(set(values)))
  index = {name: i for i, name in enumerate(names)}
  return np.array([index[v] for v in values], np.int64), names


def _split_assignment(rows, columns, options, path: str) -> np.ndarray:
  """The split name of every row: from a column, or a seeded random draw."""
  rule = options.get("split") or ("split" if "split" in columns else "random")
  if rule != "random":
    column = _need(rule, columns, path, "split")
    return np.array([str(row[column]) for row in rows], dtype=object)
  try:
    fractions = [float(f) for f in options.get("fractions", "0.8,0.1,0.1").split(",")]
    seed = int(options.get("seed", "0"))
  except ValueError as error:
    raise UserDataError(
        f"{path}: fractions= must be numbers and seed= an integer " f"({error})."
    ) from error
  if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
    raise UserDataError(
        f"{path}: fractions= must be three numbers >= 0 (train, validation, "
        f"test) summing to 1, got {fractions}."
    )
  n = len(rows)
  order = np.random.default_rng(seed).permutation(n)
  cuts = np.round(np.cumsum(fractions) * n).astype(int)
  names = np.empty(n, dtype=object)
  for name, start, stop in zip(_SPLIT_NAMES, [0, *cuts[:2]], cuts):
    names[order[start:stop]] = name
  return names


class UserTable:
  """A whole user file, parsed once: inputs, labels, class names and each row's split."""

  def __init__(self, spec: str):
    fmt, path, options = parse_spec(spec)
    self.spec, self.path = spec, path
    rows = _read_rows(fmt, path)
    columns = _columns(rows, path)
    self.inputs: dict[str, Any] = {}
    text = options.get("text") or (
        "text" if "text" in columns and "features" not in options else None
    )
    if text:
      text_columns = [_need(c, columns, path, "text") for c in text.split(",")]
      self.inputs["text"] = [" [SEP] ".join(str(row[c]) for c in text_columns) for row in rows]
    if options.get("features"):
      wanted = [
          c
          for pattern in options["features"].split(",")
          for c in (fnmatch.filter(columns, pattern) or [_need(pattern, columns, path, "features")])
      ]
      try:
        self.inputs["features"] = np.array(
            [[float(row[c]) for c in wanted] for row in rows], np.float32
        )
      except (TypeError, ValueError) as error:
        raise UserDataError(f"{path}: feature columns {wanted} must hold numbers ({error}).")
    if not self.inputs:
      raise UserDataError(
          f"{path}: say which columns are the inputs, text=COL or "
          f"features=COLS; its columns are {columns}."
      )
    label = _need(options.get("label", "label"), columns, path, "label")
    self.labels, self.label_names = _encode_labels(
        [str(row[label]).strip() for row in rows], options.get("labels"), path, label
    )
    self.num_classes = len(self.label_names) if self.label_names else int(self.labels.max()) + 1
    self.splits = _split_assignment(rows, columns, options, path)

  def rows_of(self, split: str) -> np.ndarray:
    """Row indices of a split expression: "train", "train[:100]", "test[10%:]", "a+b"."""
    indices = []
    for part in split.split("+"):
      match = re.fullmatch(r"\s*([\w\-]+)\s*(?:\[(-?\d+%?)?:(-?\d+%?)?\])?\s*", part)
      if not match:
        raise ValueError(f"Bad split {split!r} for {self.spec!r}: use NAME or NAME[start:stop].")
      name, start, stop = match.groups()
      rows = np.flatnonzero(self.splits == name)
      if not len(rows):
        raise ValueError(
            f"Bad split {split!r} for {self.spec!r}: no rows in split {name!r}; "
            f"available splits: {sorted(set(self.splits))}."
        )
      bound = (
          lambda b: None
          if b is None
          else (round(int(b[:-1]) * len(rows) / 100) if b.endswith("%") else int(b))
      )
      indices.append(rows[bound(start) : bound(stop)])
    return np.concatenate(indices)


@functools.lru_cache(maxsize=8)
def _table(spec: str, mtime: float) -> UserTable:
  del mtime  # part of the cache key: an edited file is read again
  return UserTable(spec)


def load_table(spec: str) -> UserTable:
  path = parse_spec(spec)[1]
  return _table(spec, os.path.getmtime(path) if os.path.exists(path) else 0.0)


class UserSource:
  """Random access to one split of a user file: {"text" | "features", "label"} per record."""

  def __init__(self, table: UserTable, split: str):
    self.table, self.split = table, split
    self._rows = table.rows_of(split)
    self.num_classes, self.label_names = table.num_classes, table.label_names

  def __len__(self) -> int:
    return len(self._rows)

  def __getitem__(self, index: int) -> dict[str, Any]:
    if not -len(self) <= index < len(self):
      raise IndexError(f"index {index} out of range for {self!r}.")
    row = int(self._rows[index])
    record = {key: value[row] for key, value in self.table.inputs.items()}
    record["label"] = self.table.labels[row]
    return record

  def __getitems__(self, indices) -> list[dict[str, Any]]:
    return [self[int(i)] for i in indices]

  def __repr__(self) -> str:
    return f"UserSource({self.table.path}[{self.split}], {len(self)} records)"


def get_user_source(spec: str, split: str) -> UserSource:
  return UserSource(load_table(spec), split)


def write_label_names(source, workdir: str) -> None:
  """WORKDIR/labels.json: the class names of index 0, 1, ... (when the source has names)."""
  names = getattr(source, "label_names", None)
  if names:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, LABELS_FILE), "w") as f:
      json.dump(list(names), f, indent=2)


def read_label_names(workdir: str) -> tuple[str, ...] | None:
  path = os.path.join(workdir, LABELS_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return tuple(json.load(f))
