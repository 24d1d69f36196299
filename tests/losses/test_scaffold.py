"""DiSK's scaffolded loss and budget (code and poster forms) against the NumPy reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import kd_jax.losses as L
from tests.losses import numpy_reference as ref


@pytest.mark.parametrize("batch,classes,top_k", [(1, 3, 1), (6, 10, 3), (4, 100, 10)])
def test_disk_loss_matches_reference(batch, classes, top_k):
  rng = np.random.default_rng(classes)
  s, t = rng.normal(size=(2, batch, classes)) * 3
  g = rng.uniform(0, 1, size=batch)
  y = rng.integers(0, classes, size=batch)
  out = L.disk_loss(s, t, g, y, student_temperature=3.5, teacher_temperature=4.0, top_k=top_k)
  np.testing.assert_allclose(out, ref.disk_loss(s, t, g, y, 3.5, 4.0, top_k), rtol=1e-4)


def test_disk_loss_without_help_on_all_classes_is_scaled_cross_entropy():
  rng = np.random.default_rng(1)
  s, t = rng.normal(size=(2, 5, 8))
  y = rng.integers(0, 8, size=5)
  out = L.disk_loss(s, t, np.zeros(5), y, student_temperature=2.0, teacher_temperature=3.0, top_k=8)
  expected = [
      6.0 * -np.sum(ref.softmax(b / 3.0) * np.log(ref.softmax(a / 2.0))) for a, b in zip(s, t)
  ]
  np.testing.assert_allclose(out, expected, rtol=1e-5)


def test_disk_gate_lowers_the_loss():
  rng = np.random.default_rng(2)
  s, t = rng.normal(size=(2, 4, 10))
  y = np.arange(4)
  kw = dict(student_temperature=3.5, teacher_temperature=4.0, top_k=3)
  assert np.all(
      L.disk_loss(s, t, np.full(4, 0.9), y, **kw) < L.disk_loss(s, t, np.zeros(4), y, **kw)
  )


def test_disk_budget_matches_reference_and_handles_no_errors():
  rng = np.random.default_rng(3)
  s, t = rng.normal(size=(2, 8, 5))
  g = rng.uniform(size=8)
  y = rng.integers(0, 5, size=8)
  np.testing.assert_allclose(
      L.disk_budget(s, t, g, y, delta=0.2, max_ce=1.0),
      ref.disk_budget(s, t, g, y, 0.2, 1.0),
      rtol=1e-5,
  )
  # No misclassified example: the normaliser is max(n_err, 1), finite with a gradient into g.
  y_right = np.argmax(s, axis=-1)
  value, grad = jax.value_and_grad(
      lambda gate: L.disk_budget(s, t, gate, y_right, delta=0.0, max_ce=5.0)
  )(jnp.asarray(g))
  np.testing.assert_allclose(value, ref.disk_budget(s, t, g, y_right, 0.0, 5.0), rtol=1e-5)
  assert np.isfinite(value) and np.all(np.isfinite(grad)) and np.any(grad > 0)


def test_disk_budget_does_not_differentiate_the_student():
  rng = np.random.default_rng(4)
  s, t = rng.normal(size=(2, 4, 5))
  grad = jax.grad(lambda x: L.disk_budget(x, t, np.full(4, 0.5), np.arange(4), delta=0.0))(s)
  np.testing.assert_array_equal(grad, 0.0)


def test_disk_poster_forms_match_reference():
  rng = np.random.default_rng(5)
  s, t = rng.normal(size=(2, 6, 7))
  g = rng.uniform(size=6)
  y = rng.integers(0, 7, size=6)
  np.testing.assert_allclose(
      L.disk_poster_loss(s, t, g), ref.disk_poster_loss(s, t, g), rtol=1e-4, atol=1e-6
  )
  np.testing.assert_allclose(
      L.disk_poster_budget(s, g, y, delta=0.1), ref.disk_poster_budget(s, g, y, 0.1), rtol=1e-5
  )


def test_disk_errors_name_the_problem():
  s = np.zeros((4, 10))
  with pytest.raises(ValueError, match=r"gate has shape \(3,\)"):
    L.disk_loss(
        s,
        s,
        np.zeros(3),
        np.zeros(4, np.int32),
        student_temperature=1.0,
        teacher_temperature=1.0,
        top_k=2,
    )
  with pytest.raises(ValueError, match=r"\(4, 10\).*\(4, 12\)"):
    L.disk_budget(s, np.zeros((4, 12)), np.zeros(4), np.zeros(4, np.int32), delta=0.1)
  with pytest.raises(ValueError, match="top_k"):
    L.disk_loss(
        s,
        s,
        np.zeros(4),
        np.zeros(4, np.int32),
        student_temperature=1.0,
        teacher_temperature=1.0,
        top_k=11,
    )
