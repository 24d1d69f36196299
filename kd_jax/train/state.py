"""The train state: everything a resumed run needs, as one pytree of arrays."""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

PyTree = Any


@flax.struct.dataclass
class TrainState:
  """One pytree so that jit donation, sharding and orbax treat it uniformly.

  Attributes:
    step: int32 scalar, number of optimiser updates done.
    params: trainable tree {"student": student params, "method": the method's extra params}.
    model_state: the student's non-param collections (e.g. {"batch_stats": ...}).
    opt_state: optax state of `params`.
    method_state: the method's non-trainable state (queues, EMA weights, knowledge base...).
    rng: base PRNG key (raw uint32 key data); step t uses fold_in(rng, t), so the randomness of a
      step depends only on (seed, step) and a resumed run draws exactly the same numbers.
  """
  step: jax.Array
  params: PyTree
  model_state: PyTree
  opt_state: PyTree
  method_state: PyTree
  rng: jax.Array


def create_train_state(*, student_variables: PyTree, method_params: PyTree, method_state: PyTree,
                       tx: optax.GradientTransformation, rng: jax.Array) -> TrainState:
  """Builds step-0 state from initialised student variables and the method's `Variables`."""
  student_variables = dict(student_variables)
  student_params = student_variables.pop("params")
  params = {"student": student_params, "method": method_params}
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    model_state=student_variables, opt_state=tx.init(params),
                    method_state=method_state, rng=rng)
