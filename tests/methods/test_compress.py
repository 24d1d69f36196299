"""CompRess (PAPERS.md §5) and its baselines (Reg, Reg-BN, CC, CRD) against NumPy written from the
equations; the FIFO queue and the momentum student; a tiny run through the real trainer whose
queues, pointer and EMA weights are identical after an interrupted-and-resumed run."""

import dataclasses
import json
import math
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from kd_jax import methods
from kd_jax.methods import base
from kd_jax.methods import compress
from kd_jax.methods import crd
from kd_jax.methods import embedding_baselines
from kd_jax.train import checkpoint as checkpoint_lib
from kd_jax.train import loop
from tests.train import helpers

RNG = np.random.default_rng(7)
BATCH, D_S, D_T, QUEUE = 6, 5, 7, 10
CONTEXT = base.RunContext(
    total_steps=10, steps_per_epoch=5, num_train_examples=30, batch_size=BATCH, num_classes=3
)


# ------------------------------------------------------------------------------------------------
# NumPy references, from the papers' equations (float64).


def _n(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _log_softmax(z):
  z = z - z.max(axis=-1, keepdims=True)
  return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def ref_compress(s, s_anchors, t, t_anchors, tau):
  """KL(p^T_i ‖ p^S_i), p_i(j) = softmax_j(x_i·a_j/τ), all vectors unit-normalised."""
  log_pt = _log_softmax(_n(t) @ _n(t_anchors).T / tau)
  log_ps = _log_softmax(_n(s) @ _n(s_anchors).T / tau)
  return np.sum(np.exp(log_pt) * (log_pt - log_ps), axis=-1)


def ref_batch_norm(x, eps=1e-5):
  return (x - x.mean(0)) / np.sqrt(x.var(0) + eps)


def ref_cc(s, t, gamma=0.4, order=2):
  def corr(x):
    dots = _n(x) @ _n(x).T
    return sum(
        math.exp(-2 * gamma) * (2 * gamma) ** p / math.factorial(p) * dots**p
        for p in range(order + 1)
    )

  return np.mean((corr(t) - corr(s)) ** 2, axis=-1)


def ref_info_nce(anchor, positive, negatives, tau):
  pos = np.exp(np.sum(anchor * positive, -1) / tau)
  neg = np.exp(anchor @ negatives.T / tau).sum(-1)
  return -np.log(pos / (pos + neg))


def _f64(x):
  return np.asarray(x, np.float64)


def _normal(*shape):
  return jnp.asarray(RNG.normal(size=shape), jnp.float32)


def _io(student_variables=None, apply_student=None, inputs=None):
  return base.StepIO(
      student={"embedding": _normal(BATCH, D_S), "logits": _normal(BATCH, 3)},
      teachers=({"embedding": _normal(BATCH, D_T), "logits": _normal(BATCH, 3)},),
      batch={"label": jnp.asarray(RNG.integers(0, 3, BATCH))},
      context=CONTEXT,
      inputs=inputs,
      student_variables=student_variables,
      apply_student=apply_student,
  )


# A "student" for the momentum copy: embedding = x W; its variables carry a BatchNorm-like stat.
STUDENT_VARIABLES = {"params": {"w": _normal(4, D_S)}, "batch_stats": {"mean": _normal(D_S)}}
INPUTS = _normal(BATCH, 4)


def _apply_student(variables, x):
  return {"embedding": x @ variables["params"]["w"] + variables["batch_stats"]["mean"]}


# ------------------------------------------------------------------------------------------------
# The queue.


@pytest.mark.parametrize("size, batch", [(10, 6), (6, 4), (8, 8), (7, 3), (5, 1)])
def test_enqueue_is_fifo_with_wrap_around(size, batch):
  queue = RNG.normal(size=(size, 3)).astype(np.float32)
  expected = queue.copy()
  pointer = 0
  step = jax.jit(lambda q, p, r: (compress.enqueue(q, p, r), compress.advance(p, r.shape[0], size)))
  for _ in range(2 * size + 1):  # several passes over every pointer position
    rows = RNG.normal(size=(batch, 3)).astype(np.float32)
    expected[(pointer + np.arange(batch)) % size] = rows
    queue, new_pointer = step(jnp.asarray(queue), jnp.int32(pointer), jnp.asarray(rows))
    np.testing.assert_array_equal(np.asarray(queue), expected)
    assert int(new_pointer) == (pointer + batch) % size
    pointer = int(new_pointer)
  # FIFO: the queue holds exactly the last `size` rows written, the oldest at the pointer.


def test_queues_start_as_random_unit_vectors():
  method = methods.get_method("kd_jax.methods.compress:CompRess", queue_size=QUEUE)
  state = method.init(jax.random.key(0), _io(STUDENT_VARIABLES)).state
  for name, dim in (("teacher_queue", D_T), ("student_queue", D_S)):
    assert state[name].shape == (QUEUE, dim)
    np.testing.assert_allclose(np.linalg.norm(state[name], axis=-1), 1.0, rtol=1e-5)
  assert not np.allclose(state["teacher_queue"][:, :D_S], state["student_queue"])
  assert int(state["pointer"]) == 0


def test_update_state_enqueues_and_tracks_the_ema_of_params_and_batch_norm():
  method = compress.CompRess(variant="2q", queue_size=QUEUE, momentum=0.75)
  state = method.init(jax.random.key(1), _io(STUDENT_VARIABLES)).state
  for leaf_ema, leaf in zip(jax.tree.leaves(state["ema"]), jax.tree.leaves(STUDENT_VARIABLES)):
    np.testing.assert_array_equal(leaf_ema, leaf)  # starts as the student
  ema_w = np.asarray(STUDENT_VARIABLES["params"]["w"], np.float64)
  ema_mean = np.asarray(STUDENT_VARIABLES["batch_stats"]["mean"], np.float64)
  teacher_q, student_q = np.array(state["teacher_queue"]), np.array(state["student_queue"])
  for step in range(3):  # 18 rows into 10: wraps once
    w = RNG.normal(size=(4, D_S)).astype(np.float32)
    mean = RNG.normal(size=(D_S,)).astype(np.float32)
    rows_t = RNG.normal(size=(BATCH, D_T)).astype(np.float32)
    rows_s = RNG.normal(size=(BATCH, D_S)).astype(np.float32)
    io = base.UpdateIO(
        params={"student": {"w": w}, "method": {}},
        student_model_state={"batch_stats": {"mean": mean}},
        state_inputs={"teacher": rows_t, "student": rows_s},
        step=jnp.int32(step),
        constants={},
        context=CONTEXT,
    )
    where = (step * BATCH + np.arange(BATCH)) % QUEUE
    teacher_q[where], student_q[where] = rows_t, rows_s
    ema_w = 0.75 * ema_w + 0.25 * w
    ema_mean = 0.75 * ema_mean + 0.25 * mean
    state = method.update_state(state, io)
    np.testing.assert_array_equal(state["teacher_queue"], teacher_q)
    np.testing.assert_array_equal(state["student_queue"], student_q)
    assert int(state["pointer"]) == ((step + 1) * BATCH) % QUEUE
    np.testing.assert_allclose(state["ema"]["params"]["w"], ema_w, rtol=1e-6)
    np.testing.assert_allclose(state["ema"]["batch_stats"]["mean"], ema_mean, rtol=1e-6)


def test_momentum_sized_to_the_run_against_hand_computed_values():
  # f·T = 0.15 · 805 = 120.75 updates to reach 1 %: m = 0.01^(1/120.75) = exp(ln 0.01 / 120.75).
  m = compress.run_momentum(0.999, 0.15, 805)
  assert m == pytest.approx(math.exp(math.log(0.01) / 120.75), rel=1e-12)
  assert m == pytest.approx(0.96258, abs=1e-5)
  assert compress.random_start_share(m, 161) < 0.01  # < 1 % after the first 20 % of the run
  assert compress.random_start_share(0.999, 805) == pytest.approx(0.4469, abs=1e-4)  # paper's m
  # A run long enough for the paper's m keeps it (never raised): 0.01^(1/97 500) > 0.999.
  assert compress.run_momentum(0.999, 0.15, 650_000) == 0.999
  assert compress.run_momentum(0.999, 0.0, 805) == 0.999  # off
  assert compress.random_start_share(0.5, 3) == 0.125
  assert [compress.queue_fill_step(k, 64) for k in (256, 1000, 4096, 16384)] == [4, 16, 64, 256]
  with pytest.raises(ValueError, match="momentum_horizon is a fraction of the run"):
    compress.CompRess(momentum_horizon=1.5)


def test_update_state_uses_the_run_momentum():
  method = compress.CompRess(variant="2q", queue_size=QUEUE, momentum=0.999, momentum_horizon=0.5)
  state = method.init(jax.random.key(1), _io(STUDENT_VARIABLES)).state
  w = RNG.normal(size=(4, D_S)).astype(np.float32)
  io = base.UpdateIO(
      params={"student": {"w": w}, "method": {}},
      student_model_state={"batch_stats": {"mean": np.zeros(D_S, np.float32)}},
      state_inputs={
          "teacher": RNG.normal(size=(BATCH, D_T)).astype(np.float32),
          "student": RNG.normal(size=(BATCH, D_S)).astype(np.float32),
      },
      step=jnp.int32(0),
      constants={},
      context=CONTEXT,  # T = 10: m = 0.01^(1/5)
  )
  m = 0.01 ** (1 / 5)
  expected = m * np.asarray(STUDENT_VARIABLES["params"]["w"], np.float64) + (1 - m) * w
  np.testing.assert_allclose(
      method.update_state(state, io)["ema"]["params"]["w"], expected, rtol=1e-5
  )


# ------------------------------------------------------------------------------------------------
# CompRess losses.


def _compress(variant):
  method = compress.CompRess(variant=variant, queue_size=QUEUE, temperature=0.04)
  io = _io(STUDENT_VARIABLES, _apply_student, INPUTS)
  variables = method.init(jax.random.key(2), io)
  state = dict(variables.state)
  # Queues with structure (not only the random init): half of them near the batch's own vectors.
  state["teacher_queue"] = _normal(QUEUE, D_T)
  if "student_queue" in state:
    state["student_queue"] = _normal(QUEUE, D_S)
  if "ema" in state:  # the momentum copy differs from the student
    state["ema"] = jax.tree.map(lambda x: x + 0.3, state["ema"])
  return method, io, variables.params, state


@pytest.mark.parametrize("variant", ["1q", "2q", "no_momentum"])
def test_compress_loss_matches_reference(variant):
  method, io, params, state = _compress(variant)
  loss, aux = method.loss(params, state, io)
  s, t = _f64(io.student["embedding"]), _f64(io.teachers[0]["embedding"])
  q_t = _f64(state["teacher_queue"])
  if variant == "1q":
    kernel, bias = _f64(params["map"]["kernel"]), _f64(params["map"]["bias"])
    assert kernel.shape == (D_S, D_T)
    expected = ref_compress(s @ kernel + bias, q_t, t, q_t, 0.04)
    assert set(aux.state_inputs) == {"teacher"}
  else:
    expected = ref_compress(s, _f64(state["student_queue"]), t, q_t, 0.04)
    if variant == "2q":
      key = _f64(_apply_student(state["ema"], INPUTS)["embedding"])
    else:
      key = s
    np.testing.assert_allclose(aux.state_inputs["student"], _n(key), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(aux.state_inputs["teacher"], _n(t), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(float(loss), expected.mean(), rtol=1e-4)
  np.testing.assert_allclose(float(aux.metrics["compress_kl"]), expected.mean(), rtol=1e-4)


def test_enqueued_student_rows_carry_no_gradient():
  """ "no_momentum" enqueues the student's own embeddings, stop-gradient'ed (as the official
  code's `index_copy_` under `no_grad`)."""
  method, io, params, state = _compress("no_momentum")

  def loss_of_embedding(embedding):
    io2 = dataclasses.replace(io, student={**io.student, "embedding": embedding})
    return method.loss(params, state, io2)[1].state_inputs["student"].sum()

  grad = jax.grad(loss_of_embedding)(io.student["embedding"])
  np.testing.assert_array_equal(grad, 0.0)


def test_compress_checks_its_settings():
  with pytest.raises(ValueError, match="variant must be one of"):
    compress.CompRess(variant="3q")
  with pytest.raises(ValueError, match="momentum must be in"):
    compress.CompRess(momentum=1.0)
  with pytest.raises(ValueError, match="queue_size=4 is smaller than the batch size 6"):
    compress.CompRess(queue_size=4).init(jax.random.key(0), _io(STUDENT_VARIABLES))
  with pytest.raises(ValueError, match="queue of 3 rows cannot take a batch of 4"):
    compress.enqueue(jnp.zeros((3, 2)), jnp.int32(0), jnp.zeros((4, 2)))


# ------------------------------------------------------------------------------------------------
# Baselines.


def test_regression_matches_reference():
  method = embedding_baselines.Regression(weight=2.0)
  io = _io()
  params = method.init(jax.random.key(3), io).params
  loss, aux = method.loss(params, {}, io)
  mapped = _f64(io.student["embedding"]) @ _f64(params["map"]["kernel"]) + _f64(
      params["map"]["bias"]
  )
  expected = np.mean((mapped - _f64(io.teachers[0]["embedding"])) ** 2, axis=-1).mean()
  np.testing.assert_allclose(float(aux.metrics["reg"]), expected, rtol=1e-5)
  np.testing.assert_allclose(float(loss), 2.0 * expected, rtol=1e-5)
  assert not method.batch_dependent


def test_regression_bn_matches_reference():
  method = embedding_baselines.RegressionBN()
  io = _io()
  params = method.init(jax.random.key(4), io).params
  params = {"map": {**params["map"], "bias": jnp.full((D_T,), 3.0)}}  # cancelled by BN
  loss, _ = method.loss(params, {}, io)
  mapped = _f64(io.student["embedding"]) @ _f64(params["map"]["kernel"])
  expected = np.mean(
      (ref_batch_norm(mapped) - ref_batch_norm(_f64(io.teachers[0]["embedding"]))) ** 2, axis=-1
  )
  np.testing.assert_allclose(float(loss), expected.mean(), rtol=1e-4)
  assert method.batch_dependent


def test_correlation_congruence_matches_reference():
  method = embedding_baselines.CorrelationCongruence(weight=0.5, kd_weight=0.25)
  io = _io()
  loss, aux = method.loss({}, {}, io)
  expected = ref_cc(_f64(io.student["embedding"]), _f64(io.teachers[0]["embedding"])).mean()
  np.testing.assert_allclose(float(aux.metrics["cc"]), expected, rtol=1e-4)
  np.testing.assert_allclose(
      float(loss), 0.5 * expected + 0.25 * float(aux.metrics["kd"]), rtol=1e-5
  )
  assert method.batch_dependent


def test_crd_matches_reference_and_enqueues_its_projections():
  method = crd.CRD(feature_dim=4, queue_size=QUEUE, temperature=0.07)
  io = _io()
  variables = method.init(jax.random.key(5), io)
  params, state = variables.params, variables.state
  state = {**state, "teacher_queue": jnp.asarray(_n(RNG.normal(size=(QUEUE, 4))), jnp.float32)}
  loss, aux = method.loss(params, state, io)

  def head(x, p):
    return _n(_f64(x) @ _f64(p["kernel"]) + _f64(p["bias"]))

  z_s = head(io.student["embedding"], params["student_head"])
  z_t = head(io.teachers[0]["embedding"], params["teacher_head"])
  expected = ref_info_nce(z_s, z_t, _f64(state["teacher_queue"]), 0.07) + ref_info_nce(
      z_t, z_s, _f64(state["student_queue"]), 0.07
  )
  np.testing.assert_allclose(float(loss), expected.mean(), rtol=1e-4)
  new = method.update_state(
      state,
      base.UpdateIO(
          params=params,
          student_model_state={},
          state_inputs=aux.state_inputs,
          step=0,
          constants={},
          context=CONTEXT,
      ),
  )
  np.testing.assert_allclose(new["student_queue"][:BATCH], z_s, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(new["teacher_queue"][:BATCH], z_t, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(new["teacher_queue"][BATCH:], state["teacher_queue"][BATCH:])
  assert int(new["pointer"]) == BATCH


# ------------------------------------------------------------------------------------------------
# Through the real trainer: resume is exact, evaluators run on the distilled student.

QUEUE_E2E = 40  # batch 32: the pointer wraps mid-batch (32 → 24 → 16 ...)
EVALS = {
    "probe": {
        "kind": "kd_jax.evaluators.linear_probe:LinearProbe",
        "split": "test",
        "regularization": (0.1, 1.0),
    },
    "knn": {"kind": "kd_jax.evaluators.nearest_neighbour:NearestNeighbour", "split": "test"},
    "ca": {"kind": "kd_jax.evaluators.cluster_alignment:ClusterAlignment", "split": "test"},
}


def _compress_config(teacher_dir):
  config = helpers.tiny_config(
      total_steps=8, checkpoint_every=4, max_to_keep=3, validation_split="validation"
  )
  config.model_kwargs = ml_collections.ConfigDict({"width": 4})
  config.method = ml_collections.ConfigDict(
      dict(
          name="kd_jax.methods.compress:CompRess", variant="2q", queue_size=QUEUE_E2E, momentum=0.9
      )
  )
  teacher = {"model": "tests.train.helpers:TinyCNN", "model_kwargs": {"width": 8}}
  config.teachers = (ml_collections.ConfigDict({**teacher, "workdir": str(teacher_dir)}),)
  config.evals = ml_collections.ConfigDict(EVALS)
  return config


@pytest.fixture(scope="module")
def compress_run(tmp_path_factory):
  root = tmp_path_factory.mktemp("compress")
  teacher_dir = root / "teacher"
  loop.train_and_evaluate(helpers.tiny_config(total_steps=2, checkpoint_every=2), str(teacher_dir))
  config = _compress_config(teacher_dir)
  results = loop.train_and_evaluate(config, str(root / "uninterrupted"))
  return root, config, results


def test_compress_run_fills_the_queues_and_runs_the_evaluators(compress_run):
  root, _, results = compress_run
  _, state = checkpoint_lib.restore_latest_state(str(root / "uninterrupted"))
  method_state = state["method_state"]
  assert int(method_state["pointer"]) == (8 * 32) % QUEUE_E2E
  # 256 rows went into 40: every random (signed) initial row was replaced by an embedding of
  # TinyCNN, whose pooled ReLU features are non-negative.
  for name in ("teacher_queue", "student_queue"):
    queue = np.asarray(method_state[name])
    assert queue.min() >= 0.0
    np.testing.assert_allclose(np.linalg.norm(queue, axis=-1), 1.0, rtol=1e-5)
  ema, student = method_state["ema"], state["params"]["student"]
  assert not np.array_equal(ema["params"]["Conv_0"]["kernel"], student["Conv_0"]["kernel"])
  assert not np.array_equal(
      ema["batch_stats"]["BatchNorm_0"]["mean"],
      state["model_state"]["batch_stats"]["BatchNorm_0"]["mean"],
  )
  for name in ("probe", "knn", "ca"):
    assert 0.0 <= results["evals"][name]["accuracy"] <= 1.0
  assert results["evals"]["probe"]["regularization"] in (0.1, 1.0)
  assert results["evals"]["knn"]["database_size"] == 512
  assert results["evals"]["ca"]["clusters"] == 10
  assert results["evals"]["knn"]["accuracy"] > 0.3  # distilled features of digits: chance is 0.1


def test_interrupted_and_resumed_run_is_identical(compress_run, capsys):
  root, config, results = compress_run
  interrupted = root / "interrupted"
  shutil.copytree(root / "uninterrupted", interrupted)
  # What a run killed after its step-4 checkpoint leaves behind.
  shutil.rmtree(interrupted / "checkpoints" / "8")
  (interrupted / "results.json").unlink()
  resumed_results = loop.train_and_evaluate(config, str(interrupted))
  assert "from checkpoint step 4" in capsys.readouterr().out
  _, expected = checkpoint_lib.restore_latest_state(str(root / "uninterrupted"))
  step, resumed = checkpoint_lib.restore_latest_state(str(interrupted))
  assert step == 8
  assert jax.tree.structure(expected) == jax.tree.structure(resumed)
  for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(resumed)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # Queues, pointer and EMA weights in particular (covered above, named here for the reader).
  for key in ("teacher_queue", "student_queue", "pointer"):
    np.testing.assert_array_equal(expected["method_state"][key], resumed["method_state"][key])
  assert json.dumps(resumed_results, sort_keys=True) == json.dumps(results, sort_keys=True)


@pytest.mark.parametrize(
    "name, options",
    [
        ("kd_jax.methods.compress:CompRess", {"variant": "1q", "queue_size": 40}),
        ("kd_jax.methods.embedding_baselines:RegressionBN", {}),
        ("kd_jax.methods.crd:CRD", {"queue_size": 40, "feature_dim": 8}),
    ],
)
def test_variants_and_baselines_train_through_the_engine(name, options, compress_run, tmp_path):
  root, _, _ = compress_run
  config = _compress_config(root / "teacher")
  config.total_steps, config.checkpoint_every = 2, 2
  config.evals = ml_collections.ConfigDict()
  config.method = ml_collections.ConfigDict({"name": name, **options})
  results = loop.train_and_evaluate(config, str(tmp_path))
  assert "accuracy" in results
