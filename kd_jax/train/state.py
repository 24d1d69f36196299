"""The train state: everything a resumed run needs, as one pytree of arrays."""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

PyTree = Any

# Bits of `TrainState.nonfinite[1]`: what went non-finite at the step in `nonfinite[0]`.
NONFINITE_LOSS, NONFINITE_GRADIENT, NONFINITE_PARAMS = 1, 2, 4


@flax.struct.dataclass
class TrainState:
  """One pytree so that jit donation, sharding and orbax treat it uniformly.

  Attributes:
    step: int32 scalar, number of optimiser updates done.
    params: trainable tree {"student": student params, "method": the method's extra params}.
    model_state: the student's non-param collections (e.g. {"batch_stats": ...}).
    method_model_state: the non-param collections of the method's own modules (a gate's
      BatchNorm statistics), updated in train mode by `Method.loss`.
    opt_state: optax state of `params`.
    method_state: the method's non-trainable state (queues, EMA weights...).
    rng: base PRNG key (raw uint32 key data); step t uses fold_in(rng, t), so the randomness of a
      step depends only on (seed, step) and a resumed run draws exactly the same numbers.
    nonfinite: int32 [2] = (first step whose loss, gradient or updated params were not finite, or
      -1; a bit mask of what: NONFINITE_LOSS | NONFINITE_GRADIENT | NONFINITE_PARAMS). Computed
      inside the jitted step, read by the loop before anything is saved.
  """

  step: jax.Array
  params: PyTree
  model_state: PyTree
  method_model_state: PyTree
  opt_state: PyTree
  method_state: PyTree
  rng: jax.Array
  nonfinite: jax.Array


def create_train_state(
    *,
    student_variables: PyTree,
    method_params: PyTree,
    method_state: PyTree,
    tx: optax.GradientTransformation,
    rng: jax.Array,
    method_model_state: PyTree = None,
) -> TrainState:
  """Builds step-0 state from initialised student variables and the method's `Variables`."""
  student_variables = dict(student_variables)
  student_params = student_variables.pop("params")
  params = {"student": student_params, "method": method_params}
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      model_state=student_variables,
      method_model_state={} if method_model_state is None else method_model_state,
      opt_state=tx.init(params),
      method_state=method_state,
      rng=rng,
      nonfinite=jnp.array([-1, 0], jnp.int32),
  )


def describe_nonfinite(nonfinite) -> str | None:
  """'step 12: loss, gradient' for a bad state, None for a good one."""
  step, what = (int(v) for v in nonfinite)
  if step < 0:
    return None
  names = [
      name
      for bit, name in (
          (NONFINITE_LOSS, "loss"),
          (NONFINITE_GRADIENT, "gradient norm"),
          (NONFINITE_PARAMS, "updated params or state"),
      )
      if what & bit
  ]
  return f"step {step}: {', '.join(names)} not finite"
