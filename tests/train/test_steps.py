"""The jit train step: gradient accumulation, frozen teachers, a stateful method with its own
optimiser schedule (the interface extension points), and bfloat16 compute."""

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from kd_jax import data
from kd_jax import methods
from kd_jax.methods import base
from kd_jax.losses import logits as logit_losses
from kd_jax.train import forward as forward_lib
from kd_jax.train import mesh as mesh_lib
from kd_jax.train import steps as steps_lib
from kd_jax.train.state import create_train_state
from tests.train import helpers

BATCH = 16
CONTEXT = base.RunContext(
    total_steps=10, steps_per_epoch=5, num_train_examples=80, batch_size=BATCH, num_classes=10
)


@pytest.fixture(scope="module")
def batch():
  source = helpers.mnist_small("train")
  return data.batching.stack_examples([source[i] for i in range(BATCH)])


@pytest.fixture(scope="module")
def mesh():
  return mesh_lib.make_mesh()


def init(model, seed, x):
  """Jitted init (eager init compiles every primitive separately: slow on 2 cores)."""
  with jax.threefry_partitionable(False):
    return jax.jit(lambda key: model.init(key, x, train=False))(jax.random.key(seed))


def make_state(model, method, tx, batch, seed=0):
  x = forward_lib.model_input(batch, "image", jnp.float32)
  variables = init(model, seed, x)
  forward = forward_lib.Forward(model, (), jnp.float32)
  out = jax.jit(forward.student_eval)(
      variables["params"], {k: v for k, v in variables.items() if k != "params"}, x
  )
  io = base.StepIO(
      student=out, teachers=(), batch=batch, context=CONTEXT, student_variables=variables
  )
  extra = method.init(jax.random.key(1), io)
  return create_train_state(
      student_variables=variables,
      method_params=extra.params,
      method_state=extra.state,
      method_model_state=extra.model_state,
      tx=tx,
      rng=jax.random.key_data(jax.random.key(2)),
  )


def copy(tree):
  return jax.tree.map(jnp.array, tree)


def test_gradient_accumulation_equals_full_batch(batch, mesh):
  # Without BatchNorm the loss is a mean of per-example terms, so k micro-batches must give the
  # full-batch gradient and hence the same update.
  model = helpers.TinyCNN(use_batch_norm=False)
  method = methods.get_method("supervised")
  tx = optax.sgd(0.5)
  state = make_state(model, method, tx, batch)
  forward = forward_lib.Forward(model, (), jnp.float32)
  sharded = mesh_lib.shard_batch(batch, mesh)
  results = {}
  for accum in (1, 4):
    step = steps_lib.build_train_step(
        forward=forward,
        method=method,
        tx=tx,
        mesh=mesh,
        input_key="image",
        context=CONTEXT,
        grad_accum_steps=accum,
    )
    results[accum] = step(copy(state), (), {}, sharded)
  (state_1, metrics_1), (state_4, metrics_4) = results[1], results[4]
  np.testing.assert_allclose(metrics_4["loss"], metrics_1["loss"], rtol=1e-5)
  for a, b in zip(jax.tree.leaves(state_1.params), jax.tree.leaves(state_4.params)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  assert int(state_4.step) == 1
  # And the update is really SGD: θ' = θ − 0.5·∇L (checked on the classifier bias).
  grad = jax.jit(
      jax.grad(
          lambda p: jnp.mean(
              logit_losses.cross_entropy(
                  model.apply({"params": p}, batch["image"] / 255.0, train=True)["logits"],
                  batch["label"],
              )
          )
      )
  )(state.params["student"])
  np.testing.assert_allclose(
      state_1.params["student"]["Dense_0"]["bias"],
      state.params["student"]["Dense_0"]["bias"] - 0.5 * grad["Dense_0"]["bias"],
      rtol=1e-5,
      atol=1e-6,
  )


def test_teacher_gets_no_gradient(batch):
  teacher, student = helpers.TinyCNN(width=6), helpers.TinyCNN(width=4)
  x = forward_lib.model_input(batch, "image", jnp.float32)
  teacher_vars = init(teacher, 3, x)
  student_vars = init(student, 4, x)
  forward = forward_lib.Forward(student, (teacher,), jnp.float32)
  method = methods.get_method("vanilla_kd", temperature=2.0)

  def loss(student_params, teacher_variables):
    out, _ = forward.student_train(
        student_params, {"batch_stats": student_vars["batch_stats"]}, x, jax.random.key(0)
    )
    io = base.StepIO(
        student=out,
        teachers=forward.teachers_eval((teacher_variables,), x),
        batch=batch,
        context=CONTEXT,
    )
    return method.loss({}, {}, io)[0]

  g_student, g_teacher = jax.jit(jax.grad(loss, argnums=(0, 1)))(
      student_vars["params"], teacher_vars
  )
  assert all(np.all(np.asarray(g) == 0) for g in jax.tree.leaves(g_teacher))
  assert any(np.any(np.asarray(g) != 0) for g in jax.tree.leaves(g_student))


@dataclasses.dataclass(frozen=True)
class ScaledWithEMA(methods.Method):
  """A toy method using every extension point: an extra trainable logit scale updated only on
  even steps by its own optimiser (an alternating schedule), an EMA of the student classifier
  kernel (non-trainable state updated after the step) and a count of the examples seen (fed
  through `Aux.state_inputs`)."""

  uses_teacher: ClassVar[bool] = False
  decay: float = 0.5

  def init(self, rng, io):
    kernel_shape = (io.student["embedding"].shape[-1], io.student["logits"].shape[-1])
    return methods.Variables(
        params={"scale": jnp.ones(())},
        state={"ema": jnp.zeros(kernel_shape), "seen": jnp.zeros((), jnp.int32)},
    )

  def optimizer(self, student_tx, context):
    even = lambda step: step % 2 == 0
    scale_tx = optax.transforms.conditionally_mask(optax.sgd(1.0), even)
    return optax.multi_transform(
        {"student": student_tx, "method": scale_tx}, {"student": "student", "method": "method"}
    )

  def loss(self, params, state, io):
    ce = jnp.mean(
        logit_losses.cross_entropy(params["scale"] * io.student["logits"], io.batch["label"])
    )
    ones = jnp.ones(io.batch["label"].shape, jnp.int32)
    return ce, methods.Aux(metrics={"scale": params["scale"]}, state_inputs={"ones": ones})

  def update_state(self, state, io):
    kernel = io.params["student"]["Dense_0"]["kernel"]
    ema = self.decay * state["ema"] + (1 - self.decay) * kernel
    return {"ema": ema, "seen": state["seen"] + jnp.sum(io.state_inputs["ones"])}


def test_stateful_method_with_alternating_optimizer(batch, mesh):
  model = helpers.TinyCNN()
  method = ScaledWithEMA()
  tx = method.optimizer(optax.sgd(0.1), CONTEXT)
  state = make_state(model, method, tx, batch)
  step = steps_lib.build_train_step(
      forward=forward_lib.Forward(model, (), jnp.float32),
      method=method,
      tx=tx,
      mesh=mesh,
      input_key="image",
      context=CONTEXT,
      grad_accum_steps=2,
  )
  sharded = mesh_lib.shard_batch(batch, mesh)
  scales, ema = [], np.zeros(state.method_state["ema"].shape)
  for _ in range(3):
    state, metrics = step(state, (), {}, sharded)
    scales.append(float(state.params["method"]["scale"]))
    kernel = np.asarray(state.params["student"]["Dense_0"]["kernel"])
    ema = 0.5 * ema + 0.5 * kernel
    np.testing.assert_allclose(state.method_state["ema"], ema, rtol=1e-6, atol=1e-9)
  # optax's conditionally_mask counts its own updates: 0 (apply), 1 (skip), 2 (apply).
  assert scales[0] != 1.0 and scales[1] == scales[0] and scales[2] != scales[1]
  assert int(state.method_state["seen"]) == 3 * BATCH  # micro-batches merged back to the batch
  assert int(state.step) == 3


def test_bfloat16_compute_keeps_float32_params(batch, mesh):
  method = methods.get_method("supervised")
  tx = optax.sgd(0.1)
  losses = {}
  for dtype in (jnp.float32, jnp.bfloat16):
    model = helpers.TinyCNN(dtype=dtype)
    state = make_state(helpers.TinyCNN(), method, tx, batch)
    step = steps_lib.build_train_step(
        forward=forward_lib.Forward(model, (), dtype),
        method=method,
        tx=tx,
        mesh=mesh,
        input_key="image",
        context=CONTEXT,
    )
    state, metrics = step(state, (), {}, mesh_lib.shard_batch(batch, mesh))
    losses[dtype] = float(metrics["loss"])
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(state.params))
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(state.model_state))
  assert losses[jnp.bfloat16] != losses[jnp.float32]  # really computed in bfloat16 ...
  np.testing.assert_allclose(losses[jnp.bfloat16], losses[jnp.float32], rtol=2e-2)  # ... closely
