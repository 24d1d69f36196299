"""supervised / vanilla_kd losses and the default evaluation against NumPy written from the
equations (PAPERS.md §0, §6), and the method registry's error messages."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kd_jax import methods
from kd_jax.methods import base

RNG = np.random.default_rng(0)
BATCH, CLASSES = 6, 5
CONTEXT = base.RunContext(
    total_steps=1,
    steps_per_epoch=1,
    num_train_examples=BATCH,
    batch_size=BATCH,
    num_classes=CLASSES,
)


def np_log_softmax(z):
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def np_kd(student, teacher, tau):
  """τ² KL(σ(t/τ) ‖ σ(s/τ)) per example."""
  log_pt, log_ps = np_log_softmax(teacher / tau), np_log_softmax(student / tau)
  return tau**2 * (np.exp(log_pt) * (log_pt - log_ps)).sum(-1)


def np_ensemble(members):
  """log of the mean member probability."""
  return np.log(np.mean(np.exp(np_log_softmax(members)), axis=0))


def outputs(logits):
  return {"logits": jnp.asarray(logits, jnp.float32)}


def io(student, teachers, labels, **kwargs):
  return base.StepIO(
      student=student,
      teachers=tuple(outputs(t) for t in teachers),
      batch={"label": jnp.asarray(labels)},
      context=CONTEXT,
      **kwargs,
  )


def call_loss(method, student, teachers, labels):
  return method.loss(
      {},
      {},
      io(
          outputs(student),
          teachers,
          labels,
          rng=jax.random.key(0),
          step=jnp.zeros((), jnp.int32),
          train=True,
      ),
  )


@pytest.fixture(scope="module")
def data():
  student = RNG.normal(size=(BATCH, CLASSES)) * 2
  teachers = RNG.normal(size=(3, BATCH, CLASSES)) * 3
  labels = RNG.integers(0, CLASSES, size=BATCH)
  return student, teachers, labels


def test_supervised_is_mean_cross_entropy(data):
  student, _, labels = data
  loss, aux = call_loss(methods.get_method("supervised"), student, (), labels)
  expected = -np.mean(np_log_softmax(student)[np.arange(BATCH), labels])
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  np.testing.assert_allclose(aux.metrics["ce"], expected, rtol=1e-5)


@pytest.mark.parametrize("members", [1, 3])
@pytest.mark.parametrize("alpha", [0.0, 0.3])
def test_vanilla_kd_matches_equation_with_ensembles(data, members, alpha):
  student, teachers, labels = data
  method = methods.get_method("vanilla_kd", temperature=4.0, alpha=alpha)
  loss, aux = call_loss(method, student, teachers[:members], labels)
  ce = -np.mean(np_log_softmax(student)[np.arange(BATCH), labels])
  kd = np.mean(np_kd(student, np_ensemble(teachers[:members]), 4.0))
  np.testing.assert_allclose(aux.metrics["kd"], kd, rtol=1e-5)
  np.testing.assert_allclose(loss, alpha * ce + (1 - alpha) * kd, rtol=1e-5)
  assert ("ce" in aux.metrics) == (alpha > 0)


def test_vanilla_kd_is_zero_when_student_equals_single_teacher(data):
  student, _, labels = data
  loss, _ = call_loss(methods.get_method("vanilla_kd"), student, (student,), labels)
  np.testing.assert_allclose(loss, 0.0, atol=1e-6)


def test_default_eval_metrics_with_ensemble(data):
  student, teachers, labels = data
  out = methods.get_method("vanilla_kd").eval_metrics(
      {}, {}, io(outputs(student), teachers, labels)
  )
  ensemble = np_ensemble(teachers)
  np.testing.assert_array_equal(out["accuracy"], student.argmax(-1) == labels)
  np.testing.assert_array_equal(out["teacher_accuracy"], ensemble.argmax(-1) == labels)
  np.testing.assert_array_equal(out["agreement"], student.argmax(-1) == ensemble.argmax(-1))
  np.testing.assert_allclose(
      out["predictive_kl"], np_kd(student, ensemble, 1.0), rtol=1e-4, atol=1e-6
  )


def test_eval_metrics_skip_headless_students():
  out = methods.get_method("supervised").eval_metrics(
      {}, {}, io({"logits": None, "embedding": jnp.ones((2, 3))}, (), np.zeros(2, np.int32))
  )
  assert out == {}


def test_registry_errors_name_the_problem():
  with pytest.raises(ValueError, match="Unknown method 'fitnetz'.*vanilla_kd"):
    methods.get_method("fitnetz")
  with pytest.raises(ValueError, match=r"Unknown hyper-parameter\(s\) \['tau'\].*temperature"):
    methods.get_method("vanilla_kd", tau=2.0)
  with pytest.raises(ValueError, match="temperature must be positive"):
    methods.get_method("vanilla_kd", temperature=0.0)
  with pytest.raises(ValueError, match="alpha"):
    methods.get_method("vanilla_kd", alpha=1.5)
  assert not methods.get_method("supervised").uses_teacher
  assert methods.get_method("vanilla_kd").uses_teacher


def test_requested_outputs_and_batch_dependence_are_declared():
  assert methods.get_method("vanilla_kd").requested_outputs() == (
      frozenset({"logits"}),
      frozenset({"logits"}),
  )
  assert methods.get_method("rkd").requested_outputs()[1] == frozenset({"logits", "embedding"})
  assert methods.get_method("rkd").batch_dependent
  assert not methods.get_method("vanilla_kd").batch_dependent
  assert methods.get_method("reaugkd", anchors="both").batch_dependent
  assert not methods.get_method("reaugkd", anchors="retrieved").batch_dependent
