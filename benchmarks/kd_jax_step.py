"""kd_jax's side of the train-step benchmark: the engine's KD step built and called as the trainer
(`kd_jax.train.loop`) does it, for one `step_cases.StepCase`.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import step_cases
from benchmarks.step_cases import ALPHA, NUM_LABELS, TEMPERATURE, StepCase
from kd_jax import models
from kd_jax.methods import base as method_base
from kd_jax.methods.vanilla_kd import VanillaKD
from kd_jax.train import forward as forward_lib
from kd_jax.train import mesh as mesh_lib
from kd_jax.train import state as state_lib
from kd_jax.train import steps as steps_lib

PHASE = 0  # vanilla KD has one training phase
CACHED_EXAMPLES = 50_000  # a CIFAR-sized train split for the teacher-output cache rows


def jax_models(case: StepCase, dtype, attention_implementation=None):
  if case.case == "resnet":
    return (
        models.get_model(case.teacher, num_classes=100, dtype=dtype),
        models.get_model(case.student, num_classes=100, dtype=dtype),
        "image",
    )
  bert = lambda layers: models.BertEncoder(
      models.BertConfig(num_layers=layers),
      num_classes=NUM_LABELS,
      dtype=dtype,
      attention_implementation=attention_implementation,
  )
  return bert(case.teacher), bert(case.student), "input_ids"


# Module level, so that equal modules (flax hashes them by value) compile their init once for all
# the runners of a row.
_initial_variables = jax.jit(
    lambda model, rng, x: model.init(rng, x, train=False), static_argnums=0
)


def build_jax_step(
    case: StepCase,
    dtype: str,
    attention_implementation: str | None = None,
    precast: bool = True,
    cached: bool = False,
):
  """(run(n) -> seconds for n steps, the engine's `TrainStep`, () -> its arguments but `phase`).

  The step is built and called as the trainer (`kd_jax.train.loop`) does: `build_train_step`,
  then `step(state, teachers, constants, batch, phase=PHASE)`; a change of that call fails here,
  and tests/benchmarks runs this at the smoke preset.

  `precast=False` keeps the engine's compute dtype at float32 and lets the bf16 modules cast
  their float32 params where they use them (flax's `dtype` vs `param_dtype`), instead of the
  engine casting the whole student tree to bf16 before `apply`: the difference is the embedding
  gradient, a scatter-add into a bf16 or a float32 table (see benchmarks/results/bf16_hlo_cpu.md).
  `cached=True` runs the step on cached teacher logits (`kd_jax.train.teacher_cache`, the
  engine's cache for deterministic views) of a CACHED_EXAMPLES-example split instead of the
  teacher's forward pass.
  """
  compute = jnp.dtype(dtype)
  teacher, student, input_key = jax_models(case, compute, attention_implementation)
  method = VanillaKD(temperature=TEMPERATURE, alpha=ALPHA)
  host_batch = step_cases.make_batch(case)
  x = forward_lib.model_input(host_batch, input_key, jnp.float32)
  teacher_variables = forward_lib.cast_floats(
      _initial_variables(teacher, jax.random.PRNGKey(1), x), compute
  )
  student_variables = _initial_variables(student, jax.random.PRNGKey(2), x)
  num_classes = 100 if case.case == "resnet" else NUM_LABELS
  context = method_base.RunContext(
      total_steps=1000,
      steps_per_epoch=100,
      num_train_examples=100 * case.batch,
      batch_size=case.batch,
      num_classes=num_classes,
  )
  student_tx = (
      optax.sgd(0.1, momentum=0.9)
      if case.case == "resnet"
      else optax.adamw(1e-4, weight_decay=0.01)
  )
  tx = method.optimizer(student_tx, context)
  student_outputs, teacher_outputs = method.requested_outputs()
  forward = forward_lib.Forward(
      student,
      (teacher,),
      compute if precast else jnp.float32,
      student_outputs=student_outputs,
      teacher_outputs=teacher_outputs,
  )
  mesh = mesh_lib.make_mesh()
  step = steps_lib.build_train_step(
      forward=forward,
      method=method,
      tx=tx,
      mesh=mesh,
      input_key=input_key,
      grad_accum_steps=1,
      context=context,
      cached_teachers=cached,
  )
  state = mesh_lib.replicate(
      state_lib.create_train_state(
          student_variables=student_variables,
          method_params={},
          method_state={},
          tx=tx,
          rng=jax.random.key_data(jax.random.key(0)),
      ),
      mesh,
  )
  teachers = mesh_lib.replicate((teacher_variables,), mesh)
  if cached:  # the values do not matter for timing; the shapes and the gather do
    rng = np.random.default_rng(1)
    teachers = mesh_lib.replicate(
        {
            "0": {
                "logits": jnp.asarray(rng.normal(size=(CACHED_EXAMPLES, num_classes)), jnp.float32)
            }
        },
        mesh,
    )
    host_batch = {
        **host_batch,
        "index": rng.integers(0, CACHED_EXAMPLES, case.batch).astype(np.int32),
    }
  device_batch = mesh_lib.shard_batch(host_batch, mesh)
  constants = mesh_lib.replicate({}, mesh)  # vanilla KD prepares no constants
  holder = {"state": state}

  def arguments():
    """The step's arguments before `phase`, as the loop passes them."""
    return holder["state"], teachers, constants, device_batch

  def run(n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
      # `phase` by name: a parameter added before it then fails here instead of taking its value.
      holder["state"], metrics = step(*arguments(), phase=PHASE)
    jax.block_until_ready(metrics["loss"])
    return time.perf_counter() - start

  return run, step, arguments
