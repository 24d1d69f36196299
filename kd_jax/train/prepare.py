"""Whole-split passes: the context of `Method.prepare` and the helper evaluators share.

`map_batches` runs a jitted per-batch function over an ordered, padded split and returns the
per-example results as stacked NumPy arrays with the padding removed. `prepare_constants` runs a
method's `prepare` once per run (train / validation splits only, never the test split) or
reloads what an earlier attempt of the same run saved in WORKDIR/constants/.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Mapping

import jax
import numpy as np
import tqdm
from absl import logging

from kd_jax.methods import base
from kd_jax.train import constants as constants_lib

PyTree = Any


def numeric(batch: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """The numeric entries of a batch (strings such as raw text cannot enter a jitted function)."""
  out = {}
  for key, value in batch.items():
    array = np.asarray(value)
    if array.dtype.kind in "biuf":
      out[key] = array
  return out


def map_batches(
    fn: Callable[[dict], Mapping[str, Any]],
    batches: Iterable[dict],
    *,
    description: str = "",
    progress: bool = True,
) -> dict[str, np.ndarray]:
  """{name: [N, ...]} of `fn`'s per-example outputs over all batches, padding rows dropped.

  `fn` is called on the numeric entries of each batch (compile it with `jax.jit` yourself to
  reuse the compilation across calls); every output needs a leading batch axis.
  """
  total = len(batches) if hasattr(batches, "__len__") else None
  parts: dict[str, list[np.ndarray]] = {}
  bar = tqdm.tqdm(
      batches,
      total=total,
      desc=description or "split",
      unit="batch",
      disable=not progress or jax.process_index() != 0,
      leave=False,
  )
  for batch in bar:
    batch = numeric(batch)
    keep = batch["mask"].astype(bool)
    out = jax.device_get(fn(batch))
    for name, value in out.items():
      value = np.asarray(value)
      if value.ndim == 0 or value.shape[0] != keep.shape[0]:
        raise ValueError(
            f"map_batches: output {name!r} has shape {value.shape}; every output "
            f"needs the batch axis ({keep.shape[0]}) first."
        )
      parts.setdefault(name, []).append(value[keep])
  if not parts:
    raise ValueError(f"map_batches ({description or 'split'}): no batches.")
  return {name: np.concatenate(values) for name, values in parts.items()}


def make_context(
    *,
    context: base.RunContext,
    roles: Mapping[str, str],
    batches: Callable[[str], Iterable[dict]],
    teacher_outputs: Callable[[Mapping[str, Any]], tuple],
    model_input: Callable[[Mapping[str, Any]], Any],
) -> base.PrepareContext:
  """The `PrepareContext` over the given roles ("train", optionally "validation")."""
  forbidden = sorted(r for r in roles if r not in ("train", "validation"))
  if forbidden:
    raise ValueError(f"prepare may read the train and validation splits only, not {forbidden}.")

  def role_batches(role: str):
    if role not in roles:
      known = ", ".join(sorted(roles))
      extra = (
          " (set config.validation_split)"
          if role == "validation"
          else " (the test split is never available to prepare)"
      )
      raise ValueError(f"prepare asked for the {role!r} split; available: {known}{extra}.")
    return batches(roles[role])

  def map_split(fn, role: str, description: str | None = None):
    return map_batches(
        jax.jit(fn), role_batches(role), description=description or f"prepare: {role} split"
    )

  return base.PrepareContext(
      context=context,
      roles=dict(roles),
      batches=role_batches,
      map_split=map_split,
      teacher_outputs=teacher_outputs,
      model_input=model_input,
  )


def prepare_constants(
    method: base.Method,
    ctx_factory: Callable[[], base.PrepareContext],
    *,
    workdir: str,
    fingerprint: Mapping[str, Any],
    save: bool = True,
) -> PyTree:
  """The method's constants: reloaded (and verified) when saved before, else prepared now."""
  if not method.has_prepare():
    return {}
  if constants_lib.exists(workdir):
    logging.info("Reloading constants from %s.", workdir)
    return constants_lib.load(workdir, fingerprint)
  print(f"Preparing constants of {type(method).__name__} (once per run) ...", flush=True)
  constants = method.prepare(ctx_factory())
  flat = constants_lib.flatten(constants)  # validates before anything is written
  for key, array in flat.items():
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
      raise FloatingPointError(
          f"{type(method).__name__}.prepare returned non-finite values in "
          f"constant {key!r}; nothing was saved."
      )
  if save:
    constants_lib.save(workdir, constants, fingerprint)
  # Reloading the unflattened copy keeps the exact arrays that were saved (dtypes included).
  return constants_lib.unflatten(flat)


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  return max(1, math.ceil(num_examples / batch_size))
