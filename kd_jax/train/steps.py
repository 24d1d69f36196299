"""Step builders: the jit-compiled, data-parallel train and eval steps.

Only the trainable tree {"student", "method"} is differentiated; the teachers are applied in
inference mode outside `value_and_grad` and wrapped in `stop_gradient`
(`kd_jax.train.forward`), so no gradient (and no backward computation) ever reaches them.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from kd_jax.methods import base
from kd_jax.methods.base import Aux, Method
from kd_jax.train import forward as forward_lib
from kd_jax.train import mesh as mesh_lib
from kd_jax.train import phases as phases_lib
from kd_jax.train import state as state_lib
from kd_jax.train import teacher_cache
from kd_jax.train.state import TrainState

PyTree = Any


def _all_finite(tree: PyTree) -> jax.Array:
  leaves = [
      jnp.all(jnp.isfinite(leaf))
      for leaf in jax.tree.leaves(tree)
      if jnp.issubdtype(leaf.dtype, jnp.inexact)
  ]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def _split_micro_batches(batch: dict, num_micro: int, mesh: Mesh) -> dict:
  """[B, ...] -> [num_micro, B/num_micro, ...], micro-batch j = rows j, j+k, j+2k, ...

  Strided rather than contiguous so that, with the batch split over devices in contiguous
  blocks, every micro-batch takes the same number of rows from every device (no resharding).
  """

  def split(x):
    x = x.reshape((x.shape[0] // num_micro, num_micro) + x.shape[1:])
    x = jnp.swapaxes(x, 0, 1)
    return jax.lax.with_sharding_constraint(
        x, NamedSharding(mesh, PartitionSpec(None, mesh_lib.DATA_AXIS))
    )

  return jax.tree.map(split, batch)


def _merge_micro_batches(tree: PyTree) -> PyTree:
  """Inverse of `_split_micro_batches` for stacked per-example outputs: back to [B, ...]."""

  def merge(x):
    x = jnp.swapaxes(x, 0, 1)
    return x.reshape((x.shape[0] * x.shape[1],) + x.shape[2:])

  return jax.tree.map(merge, tree)


def build_train_step(
    *,
    forward: forward_lib.Forward,
    method: Method,
    tx: optax.GradientTransformation,
    mesh: Mesh,
    input_key: str,
    context: base.RunContext,
    grad_accum_steps: int = 1,
    cached_teachers: bool = False,
) -> "TrainStep":
  """Returns train_step(state, teachers, constants, batch, phase=0) -> (state, metrics), a
  jitted program per training phase of the method (`kd_jax.train.phases`).

  `teachers` is the teachers' variables, or with `cached_teachers` their cached outputs on the
  train split (`kd_jax.train.teacher_cache`), gathered by `batch["index"]`.

  The state argument is donated (its buffers are reused for the new state); teacher variables
  and constants are replicated and not donated. With `grad_accum_steps = k`, the global batch is
  processed as k micro-batches in a `lax.scan` and the gradients are averaged, which equals one
  step on the full batch for batch-independent losses (BatchNorm statistics are then per
  micro-batch, as on a smaller accelerator); batch-dependent methods refuse k > 1.

  The step also records, in `state.nonfinite`, the first step whose loss, gradient norm or
  updated params / state are not finite; the loop reads it before saving anything.
  """
  if grad_accum_steps < 1:
    raise ValueError(f"grad_accum_steps must be >= 1, got {grad_accum_steps}.")
  if grad_accum_steps > 1 and method.batch_dependent:
    raise ValueError(
        f"method {type(method).__name__} has a batch-dependent loss (it couples the "
        f"examples of a batch), so grad_accum_steps={grad_accum_steps} would change "
        "its objective; use grad_accum_steps=1."
    )
  apply_student = forward_lib.student_applier(forward)

  def micro_step(
      trainable,
      model_state,
      method_model_state,
      method_state,
      teacher_variables,
      constants,
      batch,
      rng,
      step,
      parts=phases_lib.ALL_PARTS,
  ):
    """Loss, gradients and updated collections of one micro-batch; only `parts` are
    differentiated (the others get zero gradients, and a frozen student no backward pass)."""
    x = forward_lib.model_input(batch, input_key, forward.compute_dtype)
    if not method.uses_teacher:
      teacher_out = ()
    elif cached_teachers:
      teacher_out = teacher_cache.lookup(teacher_variables, batch)
    else:
      teacher_out = forward.teachers_eval(teacher_variables, x)
    rng_model, rng_method = jax.random.split(rng)
    if "student" not in parts:  # frozen: one inference-mode forward pass, outside the gradient
      frozen_student = jax.lax.stop_gradient(
          forward.student_eval(trainable["student"], model_state, x)
      )

    def loss_fn(differentiated):
      params = {**trainable, **differentiated}
      if "student" in parts:
        student_out, new_model_state = forward.student_train(
            params["student"], model_state, x, rng_model
        )
      else:
        student_out, new_model_state = frozen_student, model_state
      io = base.StepIO(
          student=student_out,
          teachers=teacher_out,
          batch=batch,
          context=context,
          inputs=x,
          constants=constants,
          step=step,
          rng=rng_method,
          apply_student=apply_student,
          model_state=method_model_state,
          student_variables={"params": params["student"], **model_state},
          train=True,
          trainable=frozenset(parts),
      )
      loss, aux = method.loss(params["method"], method_state, io)
      aux = Aux(*aux)
      new_method_model_state = aux.model_state if aux.model_state else method_model_state
      return loss, (new_model_state, new_method_model_state, aux._replace(model_state={}))

    differentiated = {part: trainable[part] for part in sorted(parts)}
    (loss, (new_model_state, new_method_model_state, aux)), grads = jax.value_and_grad(
        loss_fn, has_aux=True
    )(differentiated)
    grads = {
        part: grads.get(part, jax.tree.map(jnp.zeros_like, trainable[part])) for part in trainable
    }
    return loss, grads, new_model_state, new_method_model_state, aux

  def train_step(state: TrainState, teacher_variables, constants, batch, parts):
    rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
    if grad_accum_steps == 1:
      loss, grads, model_state, method_model_state, aux = micro_step(
          state.params,
          state.model_state,
          state.method_model_state,
          state.method_state,
          teacher_variables,
          constants,
          batch,
          rng,
          state.step,
          parts,
      )
    else:
      micro_batches = _split_micro_batches(batch, grad_accum_steps, mesh)

      def body(carry, inputs):
        grads_sum, model_state, method_model_state = carry
        index, micro_batch = inputs
        loss, grads, model_state, method_model_state, aux = micro_step(
            state.params,
            model_state,
            method_model_state,
            state.method_state,
            teacher_variables,
            constants,
            micro_batch,
            jax.random.fold_in(rng, index),
            state.step,
            parts,
        )
        grads_sum = jax.tree.map(jnp.add, grads_sum, grads)
        return (grads_sum, model_state, method_model_state), (loss, aux)

      zeros = jax.tree.map(jnp.zeros_like, state.params)
      (grads, model_state, method_model_state), (losses, aux) = jax.lax.scan(
          body,
          (zeros, state.model_state, state.method_model_state),
          (jnp.arange(grad_accum_steps), micro_batches),
      )
      grads = jax.tree.map(lambda g: g / grad_accum_steps, grads)
      loss = jnp.mean(losses)
      aux = Aux(
          metrics=jax.tree.map(jnp.mean, aux.metrics),
          state_inputs=_merge_micro_batches(aux.state_inputs),
      )

    # The step's loss goes to the optimiser as `value` (optax's extra-args convention), so a
    # method may chain e.g. `optax.contrib.reduce_on_plateau`; other transformations ignore it.
    updates, opt_state = optax.with_extra_args_support(tx).update(
        grads, state.opt_state, state.params, value=loss
    )
    params = optax.apply_updates(state.params, updates)
    method_state = method.update_state(
        state.method_state,
        base.UpdateIO(
            params=params,
            student_model_state=model_state,
            state_inputs=aux.state_inputs,
            step=state.step,
            constants=constants,
            context=context,
        ),
    )
    grad_norm = optax.tree.norm(grads)
    what = (
        jnp.where(jnp.isfinite(loss), 0, state_lib.NONFINITE_LOSS)
        | jnp.where(jnp.isfinite(grad_norm), 0, state_lib.NONFINITE_GRADIENT)
        | jnp.where(
            _all_finite((params, model_state, method_model_state, method_state)),
            0,
            state_lib.NONFINITE_PARAMS,
        )
    )
    first_bad = (state.nonfinite[0] < 0) & (what != 0)
    nonfinite = jnp.where(first_bad, jnp.stack([state.step + 1, what]), state.nonfinite)
    new_state = state.replace(
        step=state.step + 1,
        params=params,
        model_state=model_state,
        method_model_state=method_model_state,
        opt_state=opt_state,
        method_state=method_state,
        nonfinite=nonfinite.astype(jnp.int32),
    )
    metrics = {**aux.metrics, "loss": loss, "grad_norm": grad_norm}
    return new_state, metrics

  replicated = mesh_lib.replicated(mesh)
  # One program per phase, chosen on the host: a `lax.switch` inside one program made a DiSK step
  # 2.4× slower than KD on XLA:CPU (branches run as separate, less parallel computations).
  jitted = [
      jax.jit(
          functools.partial(train_step, parts=parts),
          donate_argnums=(0,),
          out_shardings=(replicated, replicated),
      )
      for parts in (phases_lib.phase_parts(method) or (phases_lib.ALL_PARTS,))
  ]
  return TrainStep(jitted)


class TrainStep:
  """The jitted train step of each phase of the method (one without phases).

  `step(state, teachers, constants, batch, phase=0)`; `phase` is the host-side index of
  `Method.phase` for the step being computed (`kd_jax.train.phases.phase_of_steps`).
  """

  def __init__(self, jitted: list):
    self.jitted = jitted

  def __call__(self, state, teacher_variables, constants, batch, phase: int = 0):
    return self.jitted[phase](state, teacher_variables, constants, batch)

  def lower(self, state, teacher_variables, constants, batch, phase: int = 0):
    """`jax.stages.Lowered` of the step that the same arguments would run (to read its HLO)."""
    return self.jitted[phase].lower(state, teacher_variables, constants, batch)

  def for_phase(self, phase: int):
    """The jitted function of one phase (e.g. to lower or inspect it)."""
    return self.jitted[phase]


def build_eval_step(
    *,
    forward: forward_lib.Forward,
    method: Method,
    mesh: Mesh,
    input_key: str,
    context: base.RunContext,
) -> Callable[[TrainState, Sequence[PyTree], PyTree, dict], dict]:
  """Returns jit(eval_step)(state, teacher_variables, constants, batch) -> {metric: masked sum,
  "count"}.

  The batch must carry a boolean "mask" (False on padding); sums are taken so that the caller
  can add them over batches and divide once by the total count.
  """
  apply_student = forward_lib.student_applier(forward)

  def eval_step(state: TrainState, teacher_variables, constants, batch):
    x = forward_lib.model_input(batch, input_key, forward.compute_dtype)
    student_out = forward.student_eval(state.params["student"], state.model_state, x)
    teacher_out = forward.teachers_eval(teacher_variables, x)
    io = base.StepIO(
        student=student_out,
        teachers=teacher_out,
        batch=batch,
        context=context,
        inputs=x,
        constants=constants,
        step=state.step,
        apply_student=apply_student,
        model_state=state.method_model_state,
        student_variables={"params": state.params["student"], **state.model_state},
    )
    per_example = method.eval_metrics(state.params["method"], state.method_state, io)
    mask = batch["mask"].astype(jnp.float32)
    sums = {name: jnp.sum(value * mask) for name, value in per_example.items()}
    sums["count"] = jnp.sum(mask)
    return sums

  return jax.jit(eval_step, out_shardings=mesh_lib.replicated(mesh))
