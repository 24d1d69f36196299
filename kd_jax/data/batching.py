"""Stacking examples into NumPy batches and padding the last eval batch with a mask."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

MASK_KEY = "mask"


def stack_examples(examples: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
  """Stacks a list of example dicts into a dict of arrays with a leading batch axis.

  Raises a ValueError naming the key when examples disagree on keys or shapes (e.g. audio of
  different lengths: add a fixed-length crop/pad transform before batching).
  """
  if not examples:
    raise ValueError("stack_examples: no examples to stack.")
  keys = set(examples[0])
  batch = {}
  for i, example in enumerate(examples):
    if set(example) != keys:
      raise ValueError(
          f"stack_examples: example {i} has keys {sorted(example)}, example 0 has "
          f"{sorted(keys)}."
      )
  for key in examples[0]:
    values = [np.asarray(e[key]) for e in examples]
    shapes = {v.shape for v in values}
    if len(shapes) > 1:
      raise ValueError(
          f"stack_examples: key {key!r} has different shapes in one batch "
          f"{sorted(shapes)}; add a transform that fixes its shape (crop/pad, "
          f"tokenise to max_length) before batching."
      )
    batch[key] = np.stack(values)
  return batch


def pad_batch(batch: Mapping[str, np.ndarray], batch_size: int) -> dict[str, np.ndarray]:
  """Pads every array to `batch_size` rows with zeros ('' for strings); adds a boolean mask."""
  sizes = {k: len(v) for k, v in batch.items()}
  if len(set(sizes.values())) != 1:
    raise ValueError(f"pad_batch: arrays have different batch sizes {sizes}.")
  size = next(iter(sizes.values()))
  if size > batch_size:
    raise ValueError(f"pad_batch: batch of {size} is larger than batch_size {batch_size}.")
  out = {}
  for key, value in batch.items():
    filler = np.zeros((batch_size - size,) + value.shape[1:], value.dtype)
    out[key] = np.concatenate([value, filler])
  mask = np.zeros(batch_size, bool)
  mask[:size] = True
  if MASK_KEY in batch:
    mask &= out[MASK_KEY].astype(bool)
  out[MASK_KEY] = mask
  return out


class KeepKeys:
  """Per-example transform keeping only `keys` (e.g. drop string fields before a device mesh)."""

  deterministic = True  # the same output for every draw: teacher outputs cacheable

  def __init__(self, *names: str, keys=()):
    # Positional names in code, `keys=` from a config entry {"name": "KeepKeys", "keys": [...]}.
    self.keys = tuple(names) + tuple(keys)
    if not self.keys:
      raise ValueError("KeepKeys needs at least one key to keep.")

  def __call__(self, example, rng):
    del rng  # Deterministic.
    missing = [k for k in self.keys if k not in example]
    if missing:
      raise KeyError(f"KeepKeys: example lacks {missing}; it has {sorted(example)}.")
    return {k: example[k] for k in self.keys}
