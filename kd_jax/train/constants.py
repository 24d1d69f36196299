"""A run's constants (what `Method.prepare` returns): saved once, reloaded on resume, verified.

Layout: WORKDIR/constants/{constants.safetensors, manifest.json} (the engine's cache of teacher
outputs, `kd_jax.train.teacher_cache`, stores its entries in the same format). The arrays of the
nested dict are stored flat under "/"-joined keys (safetensors, no pickle); the manifest records
each array's shape, dtype and SHA-256, and a fingerprint of what the constants were computed from
(method hyper-parameters, teachers' checkpoint steps, data). On resume every one of these is
compared and a mismatch is an error naming the file and the difference — constants are never
recomputed over a run that used other ones, and never silently reused for a different run.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Mapping

import numpy as np
from flax import traverse_util
from safetensors.numpy import load_file, save_file

DIRECTORY = "constants"
ARRAYS_FILE = "constants.safetensors"
MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1


class ConstantsError(ValueError):
  """Saved constants are missing, corrupt or belong to a different run."""


def _sha256(array: np.ndarray) -> str:
  return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def flatten(constants: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """Nested dict of arrays -> {"a/b": array}; anything else is refused by path."""
  if not isinstance(constants, Mapping):
    raise ConstantsError(
        f"Method.prepare must return a (nested) dict of arrays, got " f"{type(constants).__name__}."
    )
  flat = traverse_util.flatten_dict(dict(constants), sep="/")
  out = {}
  for key, value in flat.items():
    array = np.asarray(value)
    if array.dtype == object or array.dtype.kind not in "biuf":
      raise ConstantsError(f"constant {key!r} is not a numeric array (dtype {array.dtype}).")
    out[key] = array
  return out


def unflatten(flat: Mapping[str, np.ndarray]) -> dict[str, Any]:
  return traverse_util.unflatten_dict(dict(flat), sep="/")


def save(
    workdir: str,
    constants: Mapping[str, Any],
    fingerprint: Mapping[str, Any],
    *,
    name: str = DIRECTORY,
) -> str:
  """Writes WORKDIR/NAME atomically (temporary files, then rename); returns the directory."""
  directory = os.path.join(workdir, name)
  os.makedirs(directory, exist_ok=True)
  flat = flatten(constants)
  manifest = {
      "format_version": FORMAT_VERSION,
      "fingerprint": fingerprint,
      "arrays": {
          key: {"shape": list(a.shape), "dtype": str(a.dtype), "sha256": _sha256(a)}
          for key, a in sorted(flat.items())
      },
  }
  arrays_path = os.path.join(directory, ARRAYS_FILE)
  save_file(flat, arrays_path + ".tmp")
  os.replace(arrays_path + ".tmp", arrays_path)
  # The manifest goes last: its presence marks a complete set.
  manifest_path = os.path.join(directory, MANIFEST_FILE)
  with open(manifest_path + ".tmp", "w") as f:
    json.dump(manifest, f, indent=2)
  os.replace(manifest_path + ".tmp", manifest_path)
  return directory


def exists(workdir: str, *, name: str = DIRECTORY) -> bool:
  return os.path.exists(os.path.join(workdir, name, MANIFEST_FILE))


def load(workdir: str, fingerprint: Mapping[str, Any], *, name: str = DIRECTORY) -> dict[str, Any]:
  """The saved constants, after checking the fingerprint, shapes, dtypes and checksums."""
  directory = os.path.join(workdir, name)
  manifest_path = os.path.join(directory, MANIFEST_FILE)
  try:
    with open(manifest_path) as f:
      manifest = json.load(f)
  except (OSError, json.JSONDecodeError) as error:
    raise ConstantsError(
        f"Cannot read {manifest_path}: {error}. Delete {directory} to " "recompute the constants."
    ) from error
  missing = {"format_version", "fingerprint", "arrays"} - set(manifest)
  if missing:
    raise ConstantsError(
        f"{manifest_path} lacks {sorted(missing)}; delete {directory} to "
        "recompute the constants."
    )
  saved_fingerprint = json.loads(json.dumps(manifest["fingerprint"]))
  wanted = json.loads(json.dumps(fingerprint))
  if saved_fingerprint != wanted:
    keys = sorted(
        k for k in set(saved_fingerprint) | set(wanted) if saved_fingerprint.get(k) != wanted.get(k)
    )
    raise ConstantsError(
        f"The constants in {directory} were prepared for a different run (differs in "
        f"{keys}: saved {[saved_fingerprint.get(k) for k in keys]}, now "
        f"{[wanted.get(k) for k in keys]}); delete {directory} to recompute them."
    )
  arrays_path = os.path.join(directory, ARRAYS_FILE)
  try:
    flat = load_file(arrays_path)
  except Exception as error:  # pylint: disable=broad-except  (safetensors raises several kinds)
    raise ConstantsError(
        f"Cannot read {arrays_path} ({type(error).__name__}: {error}); delete "
        f"{directory} to recompute the constants."
    ) from error
  expected = manifest["arrays"]
  if sorted(flat) != sorted(expected):
    raise ConstantsError(
        f"{arrays_path} holds arrays {sorted(flat)} but {manifest_path} lists "
        f"{sorted(expected)}."
    )
  for key, array in flat.items():
    entry = expected[key]
    if list(array.shape) != entry["shape"] or str(array.dtype) != entry["dtype"]:
      raise ConstantsError(
          f"constant {key!r} in {arrays_path} is {array.dtype}{list(array.shape)}"
          f" but the manifest says {entry['dtype']}{entry['shape']}."
      )
    if _sha256(array) != entry["sha256"]:
      raise ConstantsError(
          f"constant {key!r} in {arrays_path} fails its SHA-256 check (the file "
          f"is corrupt); delete {directory} to recompute the constants."
      )
  return unflatten(flat)
