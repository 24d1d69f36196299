"""DiSK: the gate reads teacher features only, the schedules, the objective against NumPy, and the
alternating phases through the real train step (intended params only, no student backward pass
in gate phases)."""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from kd_jax import data
from kd_jax import methods
from kd_jax.methods import base
from kd_jax.methods import disk as disk_lib
from kd_jax.train import forward as forward_lib
from kd_jax.train import loop
from kd_jax.train import mesh as mesh_lib
from kd_jax.train import phases as phases_lib
from kd_jax.train import steps as steps_lib
from kd_jax.train.state import create_train_state
from tests.losses import numpy_reference as ref
from tests.train import helpers

BATCH, CLASSES = 16, 10
CONTEXT = base.RunContext(
    total_steps=40, steps_per_epoch=5, num_train_examples=80, batch_size=BATCH, num_classes=CLASSES
)
SMALL = dict(gate_width=8, top_k=3, gate_warmup_epochs=1, student_epochs=2, gate_epochs=1)


def _io(rng, step=0, trainable=frozenset({"student", "method"}), student_logits=None):
  teacher = {
      "logits": jnp.asarray(rng.normal(size=(BATCH, CLASSES)), jnp.float32),
      "features": [jnp.asarray(rng.normal(size=(BATCH, 6, 6, c)), jnp.float32) for c in (4, 6)],
  }
  if student_logits is None:
    student_logits = rng.normal(size=(BATCH, CLASSES))
  return base.StepIO(
      student={"logits": jnp.asarray(student_logits, jnp.float32)},
      teachers=(teacher,),
      batch={"label": jnp.asarray(rng.integers(0, CLASSES, BATCH))},
      context=CONTEXT,
      step=jnp.asarray(step, jnp.int32),
      trainable=frozenset(trainable),
  )


def _gate(method, variables, io):
  module, teacher_map = method._gate(io)
  return np.asarray(
      module.apply(
          {"params": variables.params["gate"], **variables.model_state}, teacher_map, train=False
      )
  )


def test_gate_reads_teacher_features_only():
  method = methods.get_method("disk", teacher_stage=0, **SMALL)
  rng = np.random.default_rng(0)
  io = _io(rng)
  variables = method.init(jax.random.key(0), io)
  io = dataclasses.replace(io, model_state=variables.model_state, trainable=frozenset({"student"}))
  gate_in_loss = lambda io: float(method.loss(variables.params, {}, io)[1].metrics["gate_mean"])
  # Other student outputs, labels and inputs: the same gate. Another teacher map: another gate.
  other_student = dataclasses.replace(
      io,
      student={"logits": io.student["logits"] + 3.0, "features": [jnp.ones((BATCH, 6, 6, 4))]},
      batch={"label": (io.batch["label"] + 1) % CLASSES},
      inputs=jnp.ones((BATCH, 6, 6, 1)),
  )
  assert gate_in_loss(io) == gate_in_loss(other_student)
  shifted = [io.teachers[0]["features"][0] + 1.0, io.teachers[0]["features"][1]]
  other_teacher = dataclasses.replace(io, teachers=({**io.teachers[0], "features": shifted},))
  assert gate_in_loss(io) != gate_in_loss(other_teacher)
  assert not np.allclose(_gate(method, variables, io), _gate(method, variables, other_teacher))
  # No gradient flows from the loss into the teacher map through the gate.
  teacher_map_grad = jax.grad(
      lambda f: method.loss(
          variables.params,
          {},
          dataclasses.replace(io, teachers=({**io.teachers[0], "features": [f, shifted[1]]},)),
      )[0]
  )(io.teachers[0]["features"][0])
  np.testing.assert_array_equal(np.asarray(teacher_map_grad), 0.0)


def test_phase_and_schedules_at_chosen_steps():
  method = methods.get_method(
      "disk",
      lambda_max=5.0,
      lambda_min=1.0,
      lambda_period=4,
      budget_max=0.6,
      budget_min=0.4,
      budget_period=2,
      **SMALL,
  )
  # steps_per_epoch 5: warm-up 0–4 (gate), then rounds of 10 student + 5 gate steps.
  steps = np.array([0, 4, 5, 14, 15, 19, 20, 34, 35])
  np.testing.assert_array_equal(
      np.asarray(method.phase(steps, CONTEXT)), [1, 1, 0, 0, 1, 1, 0, 1, 0]
  )
  rounds = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2])
  np.testing.assert_array_equal(np.asarray(method.schedule_epoch(steps, CONTEXT)), rounds)
  lam = 1.0 + 4.0 * (1 - np.cos(np.pi * (rounds % 4) / 4)) / 2  # 1, …, 1.586 at round 1, 3 at 2
  np.testing.assert_allclose(np.asarray(method.penalty_weight(steps, CONTEXT)), lam, rtol=1e-6)
  # δ_max = 0.6·0.9^⌊e/2⌋ (decayed at round 2): δ(0) = 0.6, δ(1) = (0.6 + 0.4)/2, δ(2) = 0.54.
  delta = [0.6] * 6 + [0.5, 0.5, 0.54]
  np.testing.assert_allclose(np.asarray(method.budget(steps, CONTEXT)), delta, rtol=1e-6)
  no_decay = dataclasses.replace(method, budget_decay=1.0)
  np.testing.assert_allclose(float(no_decay.budget(35, CONTEXT)), 0.6, rtol=1e-6)
  np.testing.assert_allclose(
      float(method.penalty_weight(jnp.asarray(20), CONTEXT)),
      1.0 + 2 * (1 - np.sqrt(0.5)),
      rtol=1e-6,
  )
  # The student's schedule spans only its own updates: of 40 steps, 5 warm-up and 2 × 5 gate.
  assert (
      phases_lib.steps_training(method, phases_lib.phase_of_steps(method, CONTEXT), "student").sum()
      == 25
  )
  joint = methods.get_method("disk", regime="joint", **SMALL)
  assert joint.training_phases() == ()
  np.testing.assert_array_equal(np.asarray(joint.schedule_epoch(steps, CONTEXT)), steps // 5)


def test_budget_decays_every_period_and_warm_up_epochs_count():
  """δ over rounds 0–9 with δ ∈ [0.4, 0.6], T_δ = 4, γ = 0.9, by hand; the warm-up's epochs are
  its own e = 0, 1 (as the code passes them), then rounds start again at e = 0."""
  method = methods.get_method(
      "disk",
      budget_max=0.6,
      budget_min=0.4,
      budget_period=4,
      budget_decay=0.9,
      **{**SMALL, "gate_warmup_epochs": 2, "student_epochs": 1},
  )
  # steps_per_epoch 5: warm-up steps 0–9 (epochs 0, 1), then rounds of 5 + 5 steps from step 10.
  warmup_steps = np.array([0, 4, 5, 9])
  np.testing.assert_array_equal(
      np.asarray(method.schedule_epoch(warmup_steps, CONTEXT)), [0, 0, 1, 1]
  )
  round_starts = 10 + 10 * np.arange(10)
  cosine = lambda top, e: top + (0.4 - top) * (1 - np.cos(np.pi * (e % 4) / 4)) / 2
  by_hand = [cosine(0.6, e) for e in range(4)]
  by_hand += [cosine(0.54, e) for e in range(4, 8)]
  by_hand += [cosine(0.486, e) for e in range(8, 10)]
  np.testing.assert_allclose(np.asarray(method.budget(round_starts, CONTEXT)), by_hand, rtol=1e-6)
  np.testing.assert_allclose(by_hand[:5], [0.6, 0.57071068, 0.5, 0.42928932, 0.54], rtol=1e-6)


def test_gate_learning_rate_steps_per_warm_up_epoch_then_per_round_with_restarts():
  method = methods.get_method(
      "disk", gate_learning_rate=0.1, gate_restart_rounds=2, **{**SMALL, "gate_warmup_epochs": 2}
  )
  # Gate updates: 2 warm-up epochs of 5 (rate per epoch: 0.1, 0.1·(1 + cos(π/2))/2 = 0.05), then
  # 5 per round (gate_epochs 1), the cosine over 2 rounds: 0.1, 0.05, 0.1 (restart), ...
  updates = np.array([0, 4, 5, 9, 10, 14, 15, 20, 25])
  expected = [0.1, 0.1, 0.05, 0.05, 0.1, 0.1, 0.05, 0.1, 0.05]
  np.testing.assert_allclose(
      np.asarray(method.gate_learning_rate_at(updates, CONTEXT)), expected, rtol=1e-6, atol=1e-9
  )


def test_eval_metrics_record_whom_the_gate_helps():
  method = methods.get_method("disk", teacher_stage=1, **SMALL)
  rng = np.random.default_rng(4)
  io = _io(rng, step=23)
  variables = method.init(jax.random.key(0), io)
  io = dataclasses.replace(io, model_state=variables.model_state)
  out = method.eval_metrics(variables.params, {}, io)
  gate = _gate(method, variables, io)
  s, t = np.asarray(io.student["logits"], np.float64), np.asarray(io.teachers[0]["logits"])
  y = np.asarray(io.batch["label"])
  wrong = s.argmax(1) != y
  hardness = np.minimum(ref.cross_entropy(s, t.argmax(1)), method.max_ce)
  np.testing.assert_allclose(np.asarray(out["gate"]), gate, rtol=1e-6)
  np.testing.assert_allclose(np.asarray(out["gate_wrong"]), gate * wrong, rtol=1e-6)
  np.testing.assert_allclose(np.asarray(out["gate_hardness"]), gate * hardness, rtol=1e-5)
  # δ of the last update (step 22), the same for every example.
  np.testing.assert_allclose(np.asarray(out["delta"]), float(method.budget(22, CONTEXT)))
  assert 0 < wrong.sum() < BATCH  # both kinds of example are present


def _reference_terms(method, io, gate, delta):
  s, t = np.asarray(io.student["logits"], np.float64), np.asarray(
      io.teachers[0]["logits"], np.float64
  )
  y = np.asarray(io.batch["label"])
  mask = np.zeros_like(t)
  np.put_along_axis(mask, np.argsort(-t, axis=1)[:, : method.top_k], 1.0, axis=1)
  mask[np.arange(len(y)), y] = 1.0
  teacher = (
      ref.softmax(t / method.teacher_temperature * mask + t.min(1, keepdims=True) * (1 - mask))
      * mask
  )
  helped = ref.softmax(s / method.student_temperature) + gate[:, None] * mask
  distill = (
      method.student_temperature * method.teacher_temperature * np.sum(-teacher * np.log(helped), 1)
  )
  hardness = np.minimum(ref.cross_entropy(s, t.argmax(1)), method.max_ce)
  errors = max(np.sum(s.argmax(1) != y), 1)
  reg = max(np.sum(gate * hardness) / errors - delta, 0.0)
  return distill.mean(), reg, ref.cross_entropy(s, y).mean()


@pytest.mark.parametrize("all_correct", [False, True])
def test_objective_matches_reference_in_each_phase(all_correct):
  method = methods.get_method("disk", teacher_stage=1, **SMALL)
  rng = np.random.default_rng(1)
  io = _io(rng)
  if all_correct:  # a batch with no misclassified example: the budget normaliser is 1
    logits = rng.normal(size=(BATCH, CLASSES))
    logits[np.arange(BATCH), np.asarray(io.batch["label"])] += 20.0
    io = dataclasses.replace(io, student={"logits": jnp.asarray(logits, jnp.float32)})
  variables = method.init(jax.random.key(0), io)
  gate = _gate(method, variables, io).astype(np.float64)
  for step, parts in ((7, {"student"}), (17, {"method"})):
    phase_io = dataclasses.replace(
        io, step=jnp.asarray(step), trainable=frozenset(parts), model_state=variables.model_state
    )
    loss, aux = method.loss(variables.params, {}, phase_io)
    lam, delta = float(method.penalty_weight(step, CONTEXT)), float(method.budget(step, CONTEXT))
    if "method" in parts:  # train-mode BatchNorm: the gate of this batch's statistics
      gate_now = np.asarray(aux.metrics["gate_mean"])
      module, teacher_map = method._gate(phase_io)
      gate_train, _ = module.apply(
          {"params": variables.params["gate"], **variables.model_state},
          teacher_map,
          train=True,
          mutable=["batch_stats"],
      )
      g = np.asarray(gate_train, np.float64)
      np.testing.assert_allclose(gate_now, g.mean(), rtol=1e-6)
      distill, reg, ce = _reference_terms(method, phase_io, g, delta)
      expected = (
          method.nll_weight * distill
          + lam * reg
          + method.nll_weight * np.mean(np.log1p(method.top_k * g))
      )
      assert set(aux.model_state) == {"batch_stats"}
    else:
      distill, reg, ce = _reference_terms(method, phase_io, gate, delta)
      expected = method.aux_weight * ce + method.nll_weight * distill
      assert aux.model_state == {}
    np.testing.assert_allclose(float(loss), expected, rtol=2e-5)
    np.testing.assert_allclose(float(aux.metrics["budget_penalty"]), reg, rtol=2e-5, atol=1e-7)
  joint = methods.get_method("disk", regime="joint", teacher_stage=1, **SMALL)
  loss, aux = joint.loss(
      variables.params,
      {},
      dataclasses.replace(io, step=jnp.asarray(12), model_state=variables.model_state),
  )
  g = np.asarray(aux.metrics["gate_mean"])
  assert np.isfinite(float(loss)) and 0 < g < 1


def _count_image_convs(jaxpr, image_shape):
  """Convolutions that read the input images (forward passes, and kernel gradients of first
  layers), recursively through sub-jaxprs."""
  count = 0
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "conv_general_dilated":
      count += any(tuple(v.aval.shape) == image_shape for v in eqn.invars)
    for value in eqn.params.values():
      for sub in value if isinstance(value, (tuple, list)) else (value,):
        inner = getattr(sub, "jaxpr", sub)
        if hasattr(inner, "eqns"):
          count += _count_image_convs(inner, image_shape)
  return count


@pytest.fixture(scope="module")
def engine_parts():
  source = helpers.mnist_small("train")
  batch = data.batching.stack_examples([source[i] for i in range(BATCH)])
  mesh = mesh_lib.make_mesh()
  student, teacher = helpers.TinyCNN(width=4), helpers.TinyCNN(width=8)
  x = forward_lib.model_input(batch, "image", jnp.float32)
  init = lambda model, seed: jax.jit(lambda key: model.init(key, x, train=False))(
      jax.random.key(seed)
  )
  student_vars, teacher_vars = init(student, 0), init(teacher, 1)
  method = methods.get_method("disk", teacher_stage=0, **SMALL)
  forward = forward_lib.Forward(
      student, (teacher,), jnp.float32, teacher_outputs=("features", "logits")
  )
  io = base.StepIO(
      student=jax.jit(forward.student_eval)(
          student_vars["params"], {"batch_stats": student_vars["batch_stats"]}, x
      ),
      teachers=jax.jit(forward.teachers_eval)((teacher_vars,), x),
      batch=batch,
      context=CONTEXT,
  )
  extra = method.init(jax.random.key(2), io)
  tx = method.optimizer(__import__("optax").sgd(0.1, momentum=0.9), CONTEXT)
  state = create_train_state(
      student_variables=student_vars,
      method_params=extra.params,
      method_state=extra.state,
      method_model_state=extra.model_state,
      tx=tx,
      rng=jax.random.key_data(jax.random.key(3)),
  )
  step = steps_lib.build_train_step(
      forward=forward, method=method, tx=tx, mesh=mesh, input_key="image", context=CONTEXT
  )
  return step, state, (teacher_vars,), mesh_lib.shard_batch(batch, mesh), x.shape


def test_gate_phase_has_no_student_backward_pass(engine_parts):
  step, state, teachers, batch, image_shape = engine_parts
  program = lambda phase: jax.make_jaxpr(step.for_phase(phase))(state, teachers, {}, batch).jaxpr
  # Student phase: teacher forward, student forward, student first-layer kernel gradient.
  assert _count_image_convs(program(disk_lib.STUDENT_PHASE), image_shape) == 3
  # Gate phase: the teacher and the frozen student forward only.
  assert _count_image_convs(program(disk_lib.GATE_PHASE), image_shape) == 2


def test_alternating_phases_update_only_their_parts(engine_parts):
  step, state, teachers, batch, _ = engine_parts
  copy = lambda tree: jax.tree.map(np.array, jax.device_get(tree))
  history = []
  method = methods.get_method("disk", teacher_stage=0, **SMALL)
  for index in range(7):  # steps 0–4 warm up the gate, 5–6 train the student
    before = copy((state.params, state.model_state, state.method_model_state))
    phase = int(method.phase(np.asarray(index), CONTEXT))  # as the loop does, on the host
    state, metrics = step(state, teachers, {}, batch, phase)
    after = copy((state.params, state.model_state, state.method_model_state))
    history.append((before, after, float(metrics["gate_phase"])))
  changed = lambda a, b: any(
      not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
  )
  for index, (before, after, gate_phase) in enumerate(history):
    (p0, s0, g0), (p1, s1, g1) = before, after
    assert gate_phase == (1.0 if index < 5 else 0.0)
    if index < 5:  # gate phase: student params and BatchNorm statistics untouched
      assert not changed(p0["student"], p1["student"]) and not changed(s0, s1)
      assert changed(p0["method"], p1["method"]) and changed(g0, g1)
    else:  # student phase: the gate and its statistics untouched (momentum included)
      assert changed(p0["student"], p1["student"]) and changed(s0, s1)
      assert not changed(p0["method"], p1["method"]) and not changed(g0, g1)


def test_disk_trains_through_the_engine(tmp_path):
  teacher_dir = tmp_path / "teacher"
  loop.train_and_evaluate(helpers.tiny_config(total_steps=2, checkpoint_every=2), str(teacher_dir))
  config = helpers.tiny_config(total_steps=6, checkpoint_every=6)
  config.model_kwargs = ml_collections.ConfigDict({"width": 4})
  config.method = ml_collections.ConfigDict(
      {"name": "disk", "teacher_stage": 0, "gate_width": 8, "top_k": 3, "gate_warmup_epochs": 0}
  )
  config.teachers = (
      ml_collections.ConfigDict(
          {
              "model": "tests.train.helpers:TinyCNN",
              "model_kwargs": {"width": 8},
              "workdir": str(teacher_dir),
          }
      ),
  )
  results = loop.train_and_evaluate(config, str(tmp_path / "student"))
  assert {"accuracy", "agreement", "gate"} <= set(results)
  assert 0 < results["gate"] < 1


def test_bad_settings_are_named():
  with pytest.raises(ValueError, match="regime"):
    methods.get_method("disk", regime="cifar")
  method = methods.get_method("disk", teacher_stage=5, **{k: v for k, v in SMALL.items()})
  with pytest.raises(ValueError, match="teacher_stage=5 but the teacher has 2"):
    method.init(jax.random.key(0), _io(np.random.default_rng(0)))
