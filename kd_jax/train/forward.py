"""The student's and the teachers' forward passes, shared by the train and eval steps, the
evaluators and `kd_jax.predict`: the model input taken from a batch, the compute dtype, and the
outputs a method requested.

Mixed precision follows the usual recipe: float32 master params and optimiser state; the models
are built with flax's `dtype=compute_dtype`, which casts each float32 param where it is used (the
teachers' variables are cast once, when loaded); outputs are cast back to float32 before any loss
(the losses are float32 inside as well) and BatchNorm statistics are kept in float32.

Models are asked only for the outputs the method reads (`Method.requested_outputs`): modules whose
`__call__` takes `outputs=` compute nothing else (a transformer then keeps its fused attention),
others are filtered afterwards and XLA drops what is unused.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Collection, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

PyTree = Any


class InputKeyError(KeyError):
  """The configured `input_key` is not in the batch (e.g. text without a Tokenize transform)."""

  def __str__(self):
    return str(self.args[0])


def model_input(batch: dict[str, jax.Array], input_key: str, dtype) -> jax.Array:
  """The model input: uint8 pixels become [0, 1] floats; integer token ids stay integers."""
  if input_key not in batch:
    hint = (
        " (text needs a {'name': 'Tokenize', ...} transform to produce input_ids)"
        if input_key == "input_ids"
        else ""
    )
    raise InputKeyError(
        f"input_key={input_key!r} is not in the batch; it has " f"{sorted(batch)}{hint}."
    )
  x = batch[input_key]
  if x.dtype == jnp.uint8:
    return x.astype(dtype) / 255.0
  if jnp.issubdtype(x.dtype, jnp.floating):
    return x.astype(dtype)
  return x


def cast_floats(tree: PyTree, dtype) -> PyTree:
  return jax.tree.map(
      lambda a: a.astype(dtype) if jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating) else a, tree
  )


def _as_float32(tree: PyTree) -> PyTree:
  return cast_floats(tree, jnp.float32)


def _restore_dtypes(new: PyTree, like: PyTree) -> PyTree:
  return jax.tree.map(lambda n, o: n.astype(o.dtype), new, like)


@functools.lru_cache(maxsize=None)
def _accepts_outputs(module_type: type) -> bool:
  return "outputs" in inspect.signature(module_type.__call__).parameters


class Forward:
  """Student and teacher forward passes shared by the train and eval steps.

  `student_outputs` / `teacher_outputs`: the output names to compute (None: all of them).
  """

  def __init__(
      self,
      student: nn.Module,
      teachers: Sequence[nn.Module],
      compute_dtype,
      *,
      student_outputs: Collection[str] | None = None,
      teacher_outputs: Collection[str] | None = None,
  ):
    self.student = student
    self.teachers = tuple(teachers)
    self.compute_dtype = compute_dtype
    self.student_outputs = None if student_outputs is None else tuple(sorted(student_outputs))
    self.teacher_outputs = None if teacher_outputs is None else tuple(sorted(teacher_outputs))

  @staticmethod
  def _apply(module, variables, x, outputs, **kwargs):
    if outputs is not None and _accepts_outputs(type(module)):
      kwargs["outputs"] = outputs
    result = module.apply(variables, x, **kwargs)
    if outputs is None:
      return result
    select = lambda out: {k: v for k, v in out.items() if k in outputs}
    if kwargs.get("mutable", False) is not False:  # flax returns (out, collections), even for []
      return select(result[0]), result[1]
    return select(result)

  def student_train(self, params, model_state, x, rng):
    """Train-mode forward; returns (float32 outputs, updated non-param collections).

    The float32 params go in as they are: modules built with `dtype=compute_dtype` cast each
    param where they use it, so the weight gradients reach the optimiser in float32 rather than
    rounded to the compute dtype (and the step converts fewer elements).
    """
    variables = {"params": params, **model_state}
    out, new_model_state = self._apply(
        self.student,
        variables,
        x,
        self.student_outputs,
        train=True,
        rngs={"dropout": rng},
        mutable=list(model_state),
    )
    return _as_float32(out), _restore_dtypes(dict(new_model_state), model_state)

  def student_eval(self, params, model_state, x):
    variables = {"params": params, **model_state}
    return _as_float32(self._apply(self.student, variables, x, self.student_outputs, train=False))

  def teachers_eval(self, teacher_variables: Sequence[PyTree], x) -> tuple:
    """Frozen teachers in inference mode; a tuple with one output dict per ensemble member.

    `teacher_variables` are already in the compute dtype (cast once when loaded).
    """
    outs = tuple(
        self._apply(teacher, variables, x, self.teacher_outputs, train=False)
        for teacher, variables in zip(self.teachers, teacher_variables)
    )
    return jax.tree.map(jax.lax.stop_gradient, _as_float32(outs))


def student_applier(forward: Forward):
  """`(variables, x) -> outputs` of the student in inference mode, for `StepIO.apply_student`."""

  def apply_student(variables, inputs):
    variables = dict(variables)
    return forward.student_eval(variables.pop("params"), variables, inputs)

  return apply_student
