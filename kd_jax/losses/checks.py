"""Input validation shared by the loss and metric functions.

Losses run under `jit`, where a shape mismatch would otherwise broadcast silently into a wrong
number. Shapes are static under tracing, so these checks cost nothing at run time.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def require_same_shape(name_a: str, a, name_b: str, b) -> None:
  """Raises ValueError naming both arrays and their shapes unless the shapes are equal."""
  if jnp.shape(a) != jnp.shape(b):
    raise ValueError(
        f"{name_a} has shape {tuple(jnp.shape(a))} but {name_b} has shape "
        f"{tuple(jnp.shape(b))}; they must be equal."
    )


def require_rank(name: str, x, rank: int | tuple[int, ...]) -> None:
  """Raises ValueError unless `x` has the given rank (or one of the given ranks)."""
  ranks = (rank,) if isinstance(rank, int) else rank
  if jnp.ndim(x) not in ranks:
    wanted = " or ".join(str(r) for r in ranks)
    raise ValueError(f"{name} must have rank {wanted}, got shape {tuple(jnp.shape(x))}.")


def require_dim(name_a: str, a, axis_a: int, name_b: str, b, axis_b: int, what: str) -> None:
  """Raises ValueError unless a.shape[axis_a] == b.shape[axis_b] (e.g. equal batch sizes)."""
  da, db = jnp.shape(a)[axis_a], jnp.shape(b)[axis_b]
  if da != db:
    raise ValueError(
        f"{what} differ: {name_a} has shape {tuple(jnp.shape(a))} and {name_b} has shape "
        f"{tuple(jnp.shape(b))}."
    )


def require_labels(logits, labels) -> None:
  """Integer labels must have the logits' shape without the class axis, and lie in [0, C).

  Out-of-range labels fail silently otherwise: `take_along_axis` clamps −1 to C−1 and C gives
  NaN, `argmax == label` is simply never true. The range is checked when the labels are
  concrete (eager calls, NumPy); under `jit` they are tracers and the trainer checks every batch
  on the host instead (`kd_jax.train.guards.check_labels`).
  """
  if jnp.shape(labels) != jnp.shape(logits)[:-1]:
    raise ValueError(
        f"labels have shape {tuple(jnp.shape(labels))} but logits have shape "
        f"{tuple(jnp.shape(logits))}; labels must be integer class ids of shape "
        f"{tuple(jnp.shape(logits)[:-1])}."
    )
  if not jnp.issubdtype(jnp.result_type(labels), jnp.integer):
    raise ValueError(f"labels must be integer class ids, got dtype {jnp.result_type(labels)}.")
  concrete = not isinstance(labels, jax.core.Tracer) and (
      not isinstance(labels, jax.Array) or labels.is_fully_addressable
  )
  if concrete and np.size(labels):
    values = np.asarray(labels)
    low, high, classes = values.min(), values.max(), jnp.shape(logits)[-1]
    if low < 0 or high >= classes:
      raise ValueError(
          f"labels must be class ids in [0, {classes}) for logits with {classes} "
          f"classes, got values from {low} to {high}."
      )


def require_positive(name: str, value) -> None:
  """Raises ValueError unless `value` (a temperature, a scale) is > 0.

  A traced value (a temperature scheduled or learned inside `jit`) has no Python truth value, so
  it is not checked here; the loss marks its result with `nan_unless_positive` instead, which the
  trainer's non-finite guard reports with the step.
  """
  if isinstance(value, jax.core.Tracer):
    return
  if not np.all(np.asarray(value) > 0):
    raise ValueError(f"{name} must be positive, got {value}.")


def nan_unless_positive(result, value):
  """`result`, or NaN where a traced `value` is not > 0 (see `require_positive`)."""
  if not isinstance(value, jax.core.Tracer):
    return result
  return jnp.where(value > 0, result, jnp.nan)


def as_float32(*arrays):
  """Losses compute in float32 even when models run in bfloat16 (PAPERS.md notation)."""
  out = tuple(jnp.asarray(x, jnp.float32) for x in arrays)
  return out[0] if len(out) == 1 else out
