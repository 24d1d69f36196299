"""Reading a user's data file into rows: decompression, text decoding and the CSV / JSON lines /
Parquet parsers, each failure one line that names the file and where in it.

Compression is recognised by the file's first bytes, not its name (a `reviews.csv` that is
really gzip still reads): gzip, bzip2, xz, and zip holding exactly one file. Text is UTF-8 (a
byte-order mark is dropped; a UTF-16 mark switches to UTF-16) unless the spec names another
encoding (`encoding=latin-1`); bytes that are not in the encoding stop the read at their offset,
since guessing would turn "café" into "cafÃ©" in some rows and nothing in others.

`read_rows` returns the header, the rows as dicts and the line each row starts on. A CSV row
shorter than its header lacks the trailing keys (the table then names the row if it needed one
of them); a row with more non-empty fields than the header is refused, since every field after
an unquoted comma would shift into the next column.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import gzip
import io
import json
import lzma
import os
import zipfile
from typing import Any, NamedTuple

# The first bytes of the formats a user's file may arrive in.
_GZIP, _BZIP2, _XZ, _ZIP = b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"PK\x03\x04"
_EMPTY_ZIP, _ZSTD, _PARQUET = b"PK\x05\x06", b"\x28\xb5\x2f\xfd", b"PAR1"
_DECOMPRESS = {"gzip": gzip.decompress, "bzip2": bz2.decompress, "xz": lzma.decompress}
_UTF8_BOM, _UTF16_BOMS = codecs.BOM_UTF8, (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


class UserDataError(ValueError):
  """The file or its spec cannot be turned into a labelled source; the message says why."""


class Rows(NamedTuple):
  columns: list[str]  # header order (CSV, TSV) or first appearance (JSON lines, Parquet)
  rows: list[dict[str, Any]]
  lines: list[int | None]  # the line each row starts on (None for Parquet)


def compression_of(data: bytes) -> str | None:
  """ "gzip" | "bzip2" | "xz" | "zip" | "zstd" from the leading bytes, or None (plain)."""
  for magic, name in (
      (_GZIP, "gzip"),
      (_BZIP2, "bzip2"),
      (_XZ, "xz"),
      (_ZIP, "zip"),
      (_EMPTY_ZIP, "zip"),
      (_ZSTD, "zstd"),
  ):
    if data.startswith(magic):
      return name
  return None


def file_bytes(path: str) -> tuple[bytes, str | None]:
  """(the file's content, decompressed, and the compression it had or None)."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"data file {path} does not exist.")
  with open(path, "rb") as f:
    data = f.read()
  compression = compression_of(data)
  if compression is None:
    return data, None
  if compression == "zstd":
    raise UserDataError(
        f"{path} is zstd-compressed, which kd_jax does not read; decompress it (zstd -d) or "
        "use gzip, bzip2, xz or zip."
    )
  try:
    if compression == "zip":
      return _only_member(path, data), compression
    return _DECOMPRESS[compression](data), compression
  except (OSError, EOFError, lzma.LZMAError, zipfile.BadZipFile) as error:
    raise UserDataError(
        f"{path} starts like a {compression} file but does not decompress ({error}); it is "
        "truncated or damaged."
    ) from error


def _only_member(path: str, data: bytes) -> bytes:
  with zipfile.ZipFile(io.BytesIO(data)) as archive:
    # Folders, and the resource forks macOS adds when it zips a file, are not data.
    members = [
        m for m in archive.namelist() if not m.endswith("/") and not m.startswith("__MACOSX/")
    ]
    if len(members) != 1:
      shown = ", ".join(members[:5]) + (", ..." if len(members) > 5 else "")
      raise UserDataError(
          f"{path} is a zip archive of {len(members)} files ({shown or 'none'}); kd_jax reads a "
          "zip that holds exactly one data file: unzip it and name the file."
      )
    return archive.read(members[0])


def decode(data: bytes, encoding: str | None, path: str, compression: str | None) -> str:
  """The text of `data`; a byte outside the encoding stops with its offset and the option."""
  given = encoding
  if encoding is None:
    encoding = "utf-16" if data.startswith(_UTF16_BOMS) else "utf-8"
  try:
    codec = codecs.lookup(encoding).name
  except LookupError as error:
    raise UserDataError(
        f"{path}: unknown encoding={encoding!r} (Python codec names such as utf-8, latin-1, "
        "cp1252, utf-16)."
    ) from error
  skipped = len(_UTF8_BOM) if codec == "utf-8" and data.startswith(_UTF8_BOM) else 0
  try:
    return data[skipped:].decode(codec)
  except UnicodeDecodeError as error:
    offset = skipped + error.start
    line = data[:offset].count(b"\n") + 1
    where = f"byte offset {offset} (line {line}" + (
        f" of its {compression}-decompressed text)" if compression else ")"
    )
    if given:
      advice = "the file is in another encoding: name that one"
    else:
      advice = "if the file is in another encoding, name it"
    raise UserDataError(
        f"{path}: byte 0x{data[offset]:02x} at {where} is not valid {codec}; {advice} in the "
        "spec's options, e.g. &encoding=latin-1 (or cp1252, utf-16, ...)."
    ) from None


def read_rows(fmt: str, path: str, encoding: str | None) -> Rows:
  """The rows of a "csv" | "tsv" | "jsonl" | "parquet" file (compressed or not)."""
  data, compression = file_bytes(path)
  if fmt == "parquet":
    if encoding:
      raise UserDataError(f"{path}: encoding= is for text files (csv, tsv, jsonl), not parquet.")
    return _parquet_rows(data, path)
  if data.startswith(_PARQUET):
    raise UserDataError(f"{path} is a Parquet file, not {fmt}: name it as parquet:{path}.")
  text = decode(data, encoding, path, compression)
  if fmt == "jsonl":
    return _jsonl_rows(text, path)
  return _delimited_rows(text, "\t" if fmt == "tsv" else ",", path)


def _delimited_rows(text: str, delimiter: str, path: str) -> Rows:
  reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
  rows, lines = [], []
  try:
    header = next(reader, None)
    if header is None:
      raise UserDataError(f"{path} is empty (no header line).")
    seen = {}
    for position, name in enumerate(header, 1):
      if name.strip() and name in seen:
        raise UserDataError(
            f"{path}: the header names column {name!r} twice (fields {seen[name]} and "
            f"{position}); rename one, since only one of them could be read."
        )
      seen[name] = position
    start = reader.line_num + 1
    for fields in reader:
      if any(field.strip() for field in fields):  # blank lines are no rows
        if len(fields) > len(header) and any(f.strip() for f in fields[len(header) :]):
          raise UserDataError(
              f"{path}: row {len(rows) + 1} (line {start}) has {len(fields)} fields but the "
              f"header {len(header)}; a text holding the delimiter must be quoted."
          )
        rows.append(dict(zip(header, fields)))
        lines.append(start)
      start = reader.line_num + 1
  except csv.Error as error:
    raise UserDataError(f"{path}, line {reader.line_num}: not valid CSV ({error}).") from error
  return Rows(list(header), rows, lines)


def _jsonl_rows(text: str, path: str) -> Rows:
  columns, rows, lines = {}, [], []
  # Not splitlines(): a JSON string may hold U+2028 or U+0085 unescaped.
  for number, line in enumerate(text.split("\n"), 1):
    if line.strip():
      try:
        row = json.loads(line)
      except json.JSONDecodeError as error:
        raise UserDataError(f"{path}, line {number}: not JSON ({error}).") from error
      if not isinstance(row, dict):
        raise UserDataError(
            f"{path}, line {number}: a line must be a JSON object of columns, got "
            f"{type(row).__name__}."
        )
      columns.update(dict.fromkeys(row))
      rows.append(row)
      lines.append(number)
  return Rows(list(columns), rows, lines)


def _parquet_rows(data: bytes, path: str) -> Rows:
  try:
    import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top
  except ImportError as error:
    raise UserDataError(f"Reading {path} needs pyarrow: pip install pyarrow.") from error
  table = pq.read_table(io.BytesIO(data))
  return Rows(list(table.column_names), table.to_pylist(), [None] * table.num_rows)
