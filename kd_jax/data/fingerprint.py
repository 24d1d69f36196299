"""What data a run was trained on, so that a resume or a later stage notices when it changed.

A config names its data (`dataset`, splits) but not its content: a user's CSV edited between two
resumes, or between the teacher and the student stage of one command, keeps its name while the
rows change, and the run would silently continue on other data. The fingerprint records what
identifies the content of each kind of source:

  user files ("csv:PATH?...", tsv, jsonl, parquet)   the file's SHA-256 and size;
  TFDS and kd_jax's own builders                     name, version and the size of every split;
  registered sources and "package.module:function"   the size of each split the run reads.

`difference(saved, now)` is the first way the data changed, as one line naming the file or the
dataset (None when nothing changed that can be seen). Training keeps the fingerprint in
WORKDIR/data.json (`kd_jax.train.workdir_config`).
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Iterable

from kd_jax.data import sources
from kd_jax.data import user_data

_HASH_CHUNK = 1 << 20
_file_hashes: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256


def file_sha256(path: str) -> str:
  """SHA-256 of a file's bytes; remembered per (path, size, mtime) so a run hashes it once."""
  stat = os.stat(path)
  key = (path, stat.st_size, stat.st_mtime_ns)
  if key not in _file_hashes:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
      for chunk in iter(lambda: f.read(_HASH_CHUNK), b""):
        sha.update(chunk)
    _file_hashes[key] = sha.hexdigest()
  return _file_hashes[key]


def fingerprint(
    dataset: str, splits: Iterable[str], *, data_dir=None, manual_dir=None
) -> dict[str, Any]:
  """The identity of `dataset`'s content as far as the splits `splits` read it (JSON-able)."""
  if user_data.is_user_file(dataset):
    path = user_data.parse_spec(dataset)[1]
    if not os.path.exists(path):
      return {"dataset": dataset, "file": path, "sha256": None, "bytes": None}
    return {
        "dataset": dataset,
        "file": path,
        "sha256": file_sha256(path),
        "bytes": os.path.getsize(path),
    }
  if user_data.registered(dataset) is not None or ":" in dataset:
    return {
        "dataset": dataset,
        "splits": {
            split: len(sources.get_source(dataset, split, data_dir=data_dir, manual_dir=manual_dir))
            for split in dict.fromkeys(s for s in splits if s)
        },
    }
  info = sources.get_builder(dataset, data_dir=data_dir, manual_dir=manual_dir).info
  return {
      "dataset": dataset,
      "name": info.full_name,
      "version": str(info.version),
      "splits": {name: int(split.num_examples) for name, split in sorted(info.splits.items())},
  }


def of_config(config) -> dict[str, Any]:
  """`fingerprint` of a run config's dataset and the splits it trains, selects and reports on."""
  return fingerprint(
      config.dataset,
      (config.train_split, config.get("validation_split"), config.eval_split),
      data_dir=config.get("data_dir"),
      manual_dir=config.get("manual_dir"),
  )


def difference(saved: dict[str, Any], now: dict[str, Any], *, where: str) -> str | None:
  """How the data of `now` differs from the data `where` (e.g. "the run in DIR") was trained on.

  Only the same data is compared: the same user file, or the same dataset name; a different
  dataset is a config difference, reported elsewhere. Returns one line, or None.
  """
  fix = "restore it, or train again in a new workdir"
  if "file" in saved and "file" in now:
    if saved["file"] != now["file"]:
      return None
    if saved["sha256"] != now["sha256"]:
      if now["sha256"] is None:
        return f"{now['file']}, which {where} was trained on, no longer exists; {fix}."
      return (
          f"{now['file']} changed since {where} was trained on it (sha256 "
          f"{str(saved['sha256'])[:12]}… -> {now['sha256'][:12]}…, {saved['bytes']} -> "
          f"{now['bytes']} bytes); {fix}."
      )
    return None
  if saved.get("dataset") != now.get("dataset") or "file" in saved or "file" in now:
    return None
  name = now["dataset"]
  if saved.get("version") != now.get("version"):
    return (
        f"dataset {name!r} is version {now.get('version')} here but {where} was trained on "
        f"version {saved.get('version')}; {fix}."
    )
  for split, size in sorted(saved.get("splits", {}).items()):
    if split in now.get("splits", {}) and now["splits"][split] != size:
      return (
          f"dataset {name!r} split {split!r} has {now['splits'][split]} examples here but had "
          f"{size} when {where} was trained on it; {fix}."
      )
  return None
