"""What a run starts from: the first train batch, the student's step-0 variables and both sides'
outputs on that batch (checked before anything is written to the workdir), and the replicated
initial train state with the method's own variables.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from kd_jax.methods import base
from kd_jax.train import forward as forward_lib
from kd_jax.train import guards
from kd_jax.train import init_from as init_from_lib
from kd_jax.train import mesh as mesh_lib
from kd_jax.train import prepare as prepare_lib
from kd_jax.train.state import TrainState, create_train_state


def _check_outputs(name: str, outputs: Any, batch_size: int, num_classes: int) -> None:
  if not isinstance(outputs, dict) and not hasattr(outputs, "keys"):
    raise ValueError(
        f'{name} must return a dict of outputs ("logits", "embedding", ...), '
        f"got {type(outputs).__name__}."
    )
  logits = outputs.get("logits")
  if logits is not None and tuple(logits.shape) != (batch_size, num_classes):
    raise ValueError(
        f"{name} produces logits of shape {tuple(logits.shape)}, "
        f"expected (batch={batch_size}, num_classes={num_classes})."
    )


def peek_train_batch(train_iter) -> dict:
  """The first train batch, without moving the iterator (its state is put back)."""
  position = train_iter.get_state()
  batch = next(train_iter)
  train_iter.set_state(position)
  return prepare_lib.numeric(batch)


class StudentStart(NamedTuple):
  """The student's step-0 variables and both sides' outputs on the first train batch."""

  x: Any
  student_variables: dict
  student_out: dict
  teacher_out: tuple
  init_record: dict | None  # what `config.init_from` loaded (None: nothing, or a resume)


def start_student(
    config, *, example, forward: forward_lib.Forward, teacher_variables, resuming: bool
) -> StudentStart:
  """Initialises the student on one real train batch and checks what the models produce.

  Pretrained weights are loaded after `init` (`module.load_pretrained(variables)`), on the host,
  so they never become constants of a compiled function; so are those of `config.init_from`,
  unless the run is `resuming` (its checkpoint replaces them). The fail-fast checks (logits of
  [batch, num_classes], labels in range, the init_from shapes) run before anything is written to
  the workdir.
  """
  x = forward_lib.model_input(example, config.input_key, jnp.float32)
  init_rng, dropout_rng = jax.random.split(jax.random.key(config.seed), 4)[:2]
  init = jax.jit(lambda rngs, x: forward.student.init(rngs, x, train=False))
  # The params are replicated, so threefry's partitionable mode (needed only for sharded random
  # arrays) buys nothing here, while it makes XLA compile a deep net's initialisers ~4x slower
  # on CPU (ResNet-8: ~5 s vs ~1.4 s). Scoped to this trace only.
  with jax.threefry_partitionable(False):
    student_variables = init({"params": init_rng, "dropout": dropout_rng}, x)
  if hasattr(forward.student, "load_pretrained"):
    # Copied: a module may hand out arrays it caches, and the train step donates (deletes) the
    # buffers of the state they end up in.
    student_variables = jax.tree.map(
        lambda a: jnp.array(a, copy=True), forward.student.load_pretrained(student_variables)
    )
  init, init_record = init_from_lib.spec(config), None
  if init and not resuming:
    student_variables, init_record = init_from_lib.load(
        init,
        student_variables,
        student=init_from_lib.describe_model(config.model, config.model_kwargs),
    )

  @jax.jit
  def apply(student_variables, teacher_variables, x):
    variables = dict(student_variables)
    params = variables.pop("params")
    return forward.student_eval(params, variables, x), forward.teachers_eval(teacher_variables, x)

  student_out, teacher_out = apply(student_variables, teacher_variables, x)
  batch_size = x.shape[0]
  _check_outputs(f"student {config.model}", student_out, batch_size, config.num_classes)
  for index, out in enumerate(teacher_out):
    _check_outputs(f"teachers[{index}]", out, batch_size, config.num_classes)
  guards.check_labels(example, config.num_classes, f"first train batch ({config.dataset})")
  return StudentStart(x, student_variables, student_out, teacher_out, init_record)


def initial_train_state(
    config,
    start: StudentStart,
    *,
    example,
    forward: forward_lib.Forward,
    method: base.Method,
    tx,
    constants,
    context: base.RunContext,
    mesh,
) -> TrainState:
  """Step-0 state: the student's variables and the method's `init` on the first train batch."""
  method_rng, train_rng = jax.random.split(jax.random.key(config.seed), 4)[2:]
  io = base.StepIO(
      student=start.student_out,
      teachers=start.teacher_out,
      batch=example,
      context=context,
      inputs=start.x,
      constants=constants,
      student_variables=start.student_variables,
      apply_student=forward_lib.student_applier(forward),
  )
  # Copied: `init` may return the student's own arrays (an EMA starts as the student), and one
  # buffer appearing twice in the donated state is an error.
  method_variables = jax.tree.map(
      lambda a: jnp.array(a, copy=True), base.Variables(*method.init(method_rng, io))
  )
  state = create_train_state(
      student_variables=start.student_variables,
      method_params=method_variables.params,
      method_state=method_variables.state,
      method_model_state=method_variables.model_state,
      tx=tx,
      rng=jax.random.key_data(train_rng),
  )
  return mesh_lib.replicate(state, mesh)
