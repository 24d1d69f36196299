"""Checksums of checkpointed arrays: flipped bytes in a checkpoint must not restore silently.

orbax/TensorStore detect torn or missing files, but the array data is zstd-compressed without a
content checksum, so a byte flipped on disk decodes to different numbers without any error (a
resumed student ended at 0 % agreement that way). Each checkpoint therefore records a hash of
every array, taken from the host copy of the state being saved, and a restore recomputes it.

Leaves are named like orbax names them ("params.student.Dense_0.kernel"), so a partial restore
(a teacher's params only) checks exactly the arrays it read. The hash is BLAKE2b of the C-order
bytes plus dtype and shape: exact, and independent of the device count the run used.
"""

from __future__ import annotations

import hashlib
from typing import Any, Mapping, Optional

import jax
import numpy as np

PyTree = Any
ALGORITHM = "blake2b-128"


class CorruptCheckpointError(RuntimeError):
  """A checkpoint's data differs from what was saved, or cannot be read at all."""


def leaf_name(path) -> str:
  """orbax's dotted name of a leaf from its key path ('opt_state.0.trace.student.w')."""
  parts = []
  for entry in path:
    if isinstance(entry, jax.tree_util.GetAttrKey):
      parts.append(entry.name)
    elif isinstance(entry, jax.tree_util.DictKey):
      parts.append(str(entry.key))
    elif isinstance(entry, jax.tree_util.SequenceKey):
      parts.append(str(entry.idx))
    else:  # FlattenedIndexKey and custom keys
      parts.append(str(getattr(entry, "key", entry)))
  return ".".join(parts)


def host_array(leaf: Any) -> np.ndarray:
  """The whole value of `leaf` on this host (replicated arrays: the local copy, no transfer
  between hosts; arrays sharded across hosts are gathered, a collective every host joins)."""
  if isinstance(leaf, jax.Array):
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
      leaf = jax.random.key_data(leaf)
    if leaf.is_fully_replicated:
      return np.asarray(leaf.addressable_data(0))
    if not leaf.is_fully_addressable:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

      return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
  return np.asarray(leaf)


def array_checksum(value: Any) -> str:
  array = np.ascontiguousarray(host_array(value))
  digest = hashlib.blake2b(digest_size=16)
  digest.update(f"{array.dtype.str}{array.shape}".encode())
  digest.update(array.reshape(-1).view(np.uint8))  # no copy; works for bfloat16 and 0-d
  return digest.hexdigest()


def checksums(tree: PyTree) -> dict[str, str]:
  """{leaf name: checksum} of every array leaf of `tree` (None leaves have nothing to check)."""
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {leaf_name(path): array_checksum(leaf) for path, leaf in leaves}


def record(tree: PyTree) -> dict[str, Any]:
  """What is saved beside a checkpoint's arrays (a small JSON document)."""
  return {"algorithm": ALGORITHM, "arrays": checksums(tree)}


def verify(tree: PyTree, saved: Optional[Mapping[str, Any]], *, where: str) -> None:
  """Raises CorruptCheckpointError unless every leaf of `tree` has the checksum saved for it.

  `tree` may be a subtree restored on its own (a teacher's params): only its leaves are checked.

  Raises:
    CorruptCheckpointError: naming `where`, how many arrays differ and the first few names.
  """
  if saved is None:
    raise CorruptCheckpointError(f"{where} has no checksums record.")
  if saved.get("algorithm") != ALGORITHM or not isinstance(saved.get("arrays"), Mapping):
    raise CorruptCheckpointError(
        f"{where}: the checksums record is malformed (algorithm {saved.get('algorithm')!r}, "
        f"expected {ALGORITHM!r} and an 'arrays' mapping)."
    )
  expected = saved["arrays"]
  actual = checksums(tree)
  missing = sorted(set(actual) - set(expected))
  wrong = sorted(name for name in actual if name in expected and expected[name] != actual[name])
  if missing or wrong:
    problems = []
    if wrong:
      problems.append(
          f"checksum mismatch in {len(wrong)} of {len(actual)} arrays "
          f"({', '.join(wrong[:3])}{', ...' if len(wrong) > 3 else ''})"
      )
    if missing:
      problems.append(f"no checksum saved for {', '.join(missing[:3])}")
    raise CorruptCheckpointError(
        f"{where}: {'; '.join(problems)} — its data changed on disk after it was saved."
    )


def payload_checksum(text: str) -> str:
  """Checksum of a small JSON payload (the data-iterator position)."""
  return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()
