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
  encoding=NAME      the text encoding (default UTF-8; latin-1, cp1252, utf-16, ...).
  allow_blank_text=1 train even when more than 10 % of the texts are blank (by default such a
                     file is refused: a mostly empty column is usually the wrong column or a
                     broken export; a few blank texts are accepted).

The file may be compressed — gzip, bzip2, xz, or a zip holding one file — recognised by its
first bytes, whatever its name (`kd_jax.data.user_files`). Every row is checked before anything
trains, and a problem is one line that names the row and its line: a header naming a column
twice, a row without a label field, a missing label (empty, `NaN`, `null`, ... unless listed
in labels=), labels mixing class ids and names, a byte outside the encoding.

Splits are then named as usual — "train", "validation", "test" — and sliced like TFDS splits
("train[:500]", "train[:10%]"). The class names are `source.label_names`; a trained workdir
keeps them in WORKDIR/labels.json (`write_label_names`), which `kd_jax.predict` uses to answer
with names.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import os
import re
from typing import Any, Callable
from urllib.parse import parse_qsl

import numpy as np

from kd_jax.data import user_files
from kd_jax.data.user_files import UserDataError

FORMATS = ("csv", "tsv", "jsonl", "parquet")
LABELS_FILE = "labels.json"
_OPTIONS = (
    "text",
    "features",
    "label",
    "labels",
    "split",
    "fractions",
    "seed",
    "encoding",
    "allow_blank_text",
)
# Label values that mean "no label" in exported tables (pandas, R, spreadsheets), not a class.
_MISSING_LABELS = frozenset(("", "nan", "-nan", "null", "n/a", "#n/a", "<na>"))
_MAX_BLANK_TEXT = 0.1  # fraction of blank texts above which a file is refused
_SPLIT_NAMES = ("train", "validation", "test")
_REGISTRY: dict[str, Callable[..., Any]] = {}


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


def _where(index: int, lines: list[int | None]) -> str:
  """ "row 7 (line 8)": the data row (1 = the first after the header) and where it starts."""
  line = lines[index]
  return f"row {index + 1}" + (f" (line {line})" if line is not None else "")


def _need(column: str, columns: list[str], path: str, option: str) -> str:
  if column not in columns:
    raise UserDataError(
        f"{path} has no column {column!r} (given as {option}=); its columns " f"are {columns}."
    )
  return column


def _values(table: user_files.Rows, column: str, path: str, option: str) -> list[Any]:
  """Every row's value in `column`; a row without the field (a CSV row that ends early, a JSON
  line without the key) is named rather than read as a value."""
  _need(column, table.columns, path, option)
  for index, row in enumerate(table.rows):
    if column not in row:
      raise UserDataError(
          f"{path}: {_where(index, table.lines)} has no {column!r} field (the {option}= "
          "column): the row ends before it; fill it in or drop the row."
      )
  return [row[column] for row in table.rows]


def _flag(options: dict[str, str], name: str, path: str) -> bool:
  value = options.get(name, "0").strip().lower()
  if value not in ("0", "1", "true", "false", "yes", "no", ""):
    raise UserDataError(f"{path}: {name}= takes 1 or 0 (true / false), got {value!r}.")
  return value in ("1", "true", "yes")


def _is_number(text: str) -> bool:
  try:
    return np.isfinite(float(text))
  except ValueError:
    return False


def _encode_labels(
    values: list[str], given: str | None, path: str, column: str, where
) -> tuple[np.ndarray, tuple[str, ...] | None]:
  """Class ids [n] int64 and the class names (None when the file holds integer ids).

  `where(i)` names row i in messages ("row 7 (line 8)").
  """
  names = tuple(name.strip() for name in given.split(",")) if given else ()
  for row, value in enumerate(values):
    if value.lower() in _MISSING_LABELS and value not in names:
      shown = "empty" if value == "" else f"{value!r}, a missing-value marker"
      raise UserDataError(
          f"{path}: {where(row)} has no label (column {column!r} is {shown}); give it a class "
          f"or drop the row (a class really named so must be listed in labels=)."
      )
  if names:
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted(set(values) - set(index))
    if unknown:
      raise UserDataError(
          f"{path}: label(s) {unknown[:5]} of column {column!r} are not in "
          f"labels={','.join(names)}."
      )
    return np.array([index[v] for v in values], np.int64), names
  is_id = [_is_number(v) and float(v).is_integer() for v in values]  # 3, or 3.0 (float column)
  if all(is_id):
    ids = np.array([int(float(v)) for v in values], np.int64)
    if ids.min() < 0:
      raise UserDataError(f"{path}: column {column!r} holds negative class ids ({ids.min()}).")
    return ids, None
  fractional = [i for i, v in enumerate(values) if _is_number(v) and not is_id[i]]
  if fractional:
    raise UserDataError(
        f"{path}: label column {column!r} holds non-integer values such as "
        f"{values[fractional[0]]!r} in {where(fractional[0])}; a label must be an integer class "
        f"id or a class name (for names that look like numbers give their order: labels=A,B,...)."
    )
  if any(is_id):
    number, name = is_id.index(True), is_id.index(False)
    raise UserDataError(
        f"{path}: label column {column!r} mixes class ids and class names, e.g. "
        f"{values[number]!r} in {where(number)} and {values[name]!r} in {where(name)}; use one "
        f"kind, or list every class in index order with labels=A,B,... (numbers then are names)."
    )
  names = tuple(sorted(set(values)))
  index = {name: i for i, name in enumerate(names)}
  return np.array([index[v] for v in values], np.int64), names


def _texts(table: user_files.Rows, option: str, allow_blank: bool, path: str) -> list[str]:
  """One string per row (several columns joined by " [SEP] "); refuses a mostly blank input."""
  columns = [
      [("" if v is None else str(v)) for v in _values(table, c, path, "text")]
      for c in option.split(",")
  ]
  blank = [i for i, parts in enumerate(zip(*columns)) if not any(p.strip() for p in parts)]
  if len(blank) > _MAX_BLANK_TEXT * len(table.rows) and not allow_blank:
    raise UserDataError(
        f"{path}: {len(blank)} of {len(table.rows)} texts in text={option} are blank (first: "
        f"{_where(blank[0], table.lines)}), more than {_MAX_BLANK_TEXT:.0%}; check the column, "
        "or add allow_blank_text=1 to the spec to train on them."
    )
  return [" [SEP] ".join(parts) for parts in zip(*columns)]


def _split_assignment(table: user_files.Rows, options, path: str) -> np.ndarray:
  """The split name of every row: from a column, or a seeded random draw."""
  rule = options.get("split") or ("split" if "split" in table.columns else "random")
  if rule != "random":
    return np.array([str(v) for v in _values(table, rule, path, "split")], dtype=object)
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
  n = len(table.rows)
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
    table = user_files.read_rows(fmt, path, options.get("encoding"))
    if not table.rows:
      raise UserDataError(f"{path} holds no rows.")
    columns = table.columns
    self.inputs: dict[str, Any] = {}
    text = options.get("text") or (
        "text" if "text" in columns and "features" not in options else None
    )
    if text:
      self.inputs["text"] = _texts(table, text, _flag(options, "allow_blank_text", path), path)
    if options.get("features"):
      wanted = [
          c
          for pattern in options["features"].split(",")
          for c in (fnmatch.filter(columns, pattern) or [_need(pattern, columns, path, "features")])
      ]
      values = [_values(table, c, path, "features") for c in wanted]
      try:
        self.inputs["features"] = np.array(values, np.float32).T
      except (TypeError, ValueError) as error:
        raise UserDataError(f"{path}: feature columns {wanted} must hold numbers ({error}).")
    if not self.inputs:
      raise UserDataError(
          f"{path}: say which columns are the inputs, text=COL or "
          f"features=COLS; its columns are {columns}."
      )
    label = options.get("label", "label")
    self.labels, self.label_names = _encode_labels(
        [("" if v is None else str(v)).strip() for v in _values(table, label, path, "label")],
        options.get("labels"),
        path,
        label,
        lambda row: _where(row, table.lines),
    )
    self.num_classes = len(self.label_names) if self.label_names else int(self.labels.max()) + 1
    self.splits = _split_assignment(table, options, path)

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
