"""Flipping bytes inside a checkpoint's array data so that it still decodes — the corruption
that orbax/TensorStore cannot notice and only kd_jax's checksums can (issue 16).

Where in a zstd-compressed data file a flipped byte decodes silently (literal bytes) rather than
failing loudly (block headers, Huffman tables) depends on the file, so the flip is probed: each
candidate is applied, the raw arrays are read back with plain orbax (no checksums), and the first
flip that reads back without error but with different values is kept.
"""

from __future__ import annotations

import pathlib

import jax
import numpy as np
import orbax.checkpoint as ocp


def _raw_arrays(state_dir: pathlib.Path):
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  handler = ocp.PyTreeCheckpointHandler()
  try:
    target = jax.tree.map(
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding),
        handler.metadata(state_dir).tree,
    )
    restored = handler.restore(
        state_dir,
        args=ocp.args.PyTreeRestore(
            item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target)
        ),
    )
  finally:
    handler.close()
  return [np.asarray(x) for x in jax.tree.leaves(restored)]


def _xor(path: pathlib.Path, offset: int, count: int) -> None:
  data = bytearray(path.read_bytes())
  data[offset : offset + count] = bytes(b ^ 0xFF for b in data[offset : offset + count])
  path.write_bytes(bytes(data))


def flip_silently(step_dir: pathlib.Path, count: int = 4) -> str:
  """Flips `count` bytes of the largest array-data file of `step_dir` so that the checkpoint
  still restores without error but to different values; returns a description of the flip."""
  state_dir = pathlib.Path(step_dir) / "state"
  files = [p for p in state_dir.rglob("*") if p.is_file() and p.parent.name == "d"]
  largest = max(files, key=lambda p: p.stat().st_size)
  size = largest.stat().st_size
  before = _raw_arrays(state_dir)
  for fraction in np.linspace(0.5, 0.95, 10):
    offset = int(size * fraction)
    _xor(largest, offset, count)
    try:
      after = _raw_arrays(state_dir)
    except Exception:  # pylint: disable=broad-except  (TensorStore noticed: try elsewhere)
      after = None
    if after is not None and any(
        not np.array_equal(a, b, equal_nan=True) for a, b in zip(before, after)
    ):
      return f"{count} bytes at offset {offset} of {largest.name} ({size} bytes)"
    _xor(largest, offset, count)  # undo, try the next place
  raise AssertionError(f"no silent flip found in {largest}")
