"""Hinton KD, ensembles and cross-entropy against the NumPy reference and their identities."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import kd_jax.losses as L
from tests.losses import numpy_reference as ref


@pytest.mark.parametrize("batch,classes,tau", [(1, 2, 1.0), (6, 10, 4.0), (3, 100, 0.5)])
def test_hinton_kd_matches_reference(batch, classes, tau):
  rng = np.random.default_rng(batch * classes)
  s, t = rng.normal(size=(2, batch, classes)) * 3
  np.testing.assert_allclose(
      L.hinton_kd(s, t, temperature=tau), ref.hinton_kd(s, t, tau), rtol=2e-5, atol=1e-6
  )


def test_hinton_kd_keeps_leading_axes():
  rng = np.random.default_rng(0)
  s, t = rng.normal(size=(2, 3, 4, 5))
  out = L.hinton_kd(s, t, temperature=2.0)
  assert out.shape == (3, 4)
  np.testing.assert_allclose(out[1], ref.hinton_kd(s[1], t[1], 2.0), rtol=2e-5)


def test_hinton_kd_is_zero_for_equal_logits_and_positive_otherwise():
  z = np.random.default_rng(1).normal(size=(4, 10))
  np.testing.assert_allclose(L.hinton_kd(z, z, temperature=4.0), 0.0, atol=1e-6)
  assert np.all(L.hinton_kd(z, z[::-1], temperature=4.0) > 0)


def test_hinton_kd_gradient_is_tau_times_softened_difference():
  # d/ds τ²·KL(σ(t/τ)‖σ(s/τ)) = τ(σ(s/τ) − σ(t/τ)): τ applied once per side, τ² once overall.
  rng = np.random.default_rng(2)
  s, t = rng.normal(size=(2, 3, 6))
  tau = 3.0
  grad = jax.grad(lambda x: jnp.sum(L.hinton_kd(x, t, temperature=tau)))(s)
  np.testing.assert_allclose(
      grad, tau * (ref.softmax(s / tau) - ref.softmax(t / tau)), rtol=1e-4, atol=1e-6
  )


def test_hinton_kd_rejects_mismatched_shapes_naming_both():
  with pytest.raises(ValueError, match=r"\(4, 10\).*\(4, 100\)"):
    L.hinton_kd(np.zeros((4, 10)), np.zeros((4, 100)), temperature=2.0)
  with pytest.raises(ValueError, match="temperature"):
    L.hinton_kd(np.zeros((4, 10)), np.zeros((4, 10)), temperature=0.0)


@pytest.mark.parametrize("members,batch,classes", [(1, 3, 4), (3, 5, 10), (5, 2, 100)])
def test_ensemble_logits_matches_reference(members, batch, classes):
  m = np.random.default_rng(members).normal(size=(members, batch, classes)) * 4
  out = L.ensemble_logits(m)
  np.testing.assert_allclose(out, ref.ensemble_logits(m), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(jax.nn.softmax(out), np.mean(ref.softmax(m), axis=0), atol=1e-6)


def test_ensemble_of_one_member_has_that_members_prediction():
  z = np.random.default_rng(3).normal(size=(1, 4, 6))
  np.testing.assert_allclose(jax.nn.softmax(L.ensemble_logits(z)), ref.softmax(z[0]), atol=1e-6)


def test_ensemble_logits_stays_finite_when_probabilities_underflow():
  z = np.array([[[0.0, -1e4]], [[0.0, -2e4]]], np.float32)
  assert np.all(np.isfinite(L.ensemble_logits(z)))


def test_ensemble_logits_needs_a_member_axis():
  with pytest.raises(ValueError, match="member axis first"):
    L.ensemble_logits(np.zeros((10,)))


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_cross_entropy_matches_reference(eps):
  rng = np.random.default_rng(4)
  z = rng.normal(size=(6, 9)) * 2
  y = rng.integers(0, 9, size=6)
  np.testing.assert_allclose(
      L.cross_entropy(z, y, label_smoothing=eps), ref.cross_entropy(z, y, eps), rtol=1e-5
  )


def test_cross_entropy_rejects_bad_labels():
  with pytest.raises(ValueError, match=r"labels have shape \(5,\).*logits have shape \(4, 3\)"):
    L.cross_entropy(np.zeros((4, 3)), np.zeros((5,), np.int32))
  with pytest.raises(ValueError, match="integer"):
    L.cross_entropy(np.zeros((4, 3)), np.zeros((4,), np.float32))
