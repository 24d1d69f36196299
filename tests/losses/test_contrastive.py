"""Supervised contrastive loss (Khosla et al., 2020) against a loop-based NumPy reference."""

import math

import jax
import numpy as np
import pytest

from kd_jax.losses import contrastive


def supcon_reference(emb, labels, tau):
  """L_i = −1/|P(i)| Σ_{p∈P(i)} log(exp(z_i·z_p/τ) / Σ_{a≠i} exp(z_i·z_a/τ)), written out."""
  z = [np.asarray(e, np.float64) / np.linalg.norm(e) for e in emb]
  n = len(z)
  losses, valid = [], []
  for i in range(n):
    denominator = sum(math.exp(z[i] @ z[a] / tau) for a in range(n) if a != i)
    positives = [p for p in range(n) if p != i and labels[p] == labels[i]]
    valid.append(bool(positives))
    if not positives:
      losses.append(0.0)
      continue
    losses.append(
        -sum(math.log(math.exp(z[i] @ z[p] / tau) / denominator) for p in positives)
        / len(positives)
    )
  return np.array(losses), np.array(valid)


@pytest.mark.parametrize("n,d,classes,tau", [(6, 4, 2, 0.1), (9, 16, 4, 0.5), (5, 3, 5, 1.0)])
def test_matches_reference(n, d, classes, tau):
  rng = np.random.default_rng(n * d)
  emb = rng.normal(size=(n, d)) * rng.uniform(0.5, 3.0, size=(n, 1))  # scale must not matter
  labels = rng.integers(0, classes, size=n)
  loss, valid = contrastive.supervised_contrastive(emb, labels, temperature=tau)
  expected, expected_valid = supcon_reference(emb, labels, tau)
  np.testing.assert_allclose(loss, expected, rtol=1e-4, atol=1e-5)
  np.testing.assert_array_equal(valid, expected_valid)


def test_anchor_without_positive_is_zero_and_invalid():
  loss, valid = contrastive.supervised_contrastive(
      np.eye(3, 4), np.array([0, 0, 1]), temperature=0.1
  )
  assert valid.tolist() == [True, True, False] and float(loss[2]) == 0.0


def test_gradients_are_finite_and_jit_works():
  rng = np.random.default_rng(0)
  emb, labels = rng.normal(size=(8, 5)), rng.integers(0, 2, size=8)
  grad = jax.jit(
      jax.grad(lambda e: contrastive.supervised_contrastive(e, labels, temperature=0.1)[0].sum())
  )(emb)
  assert np.all(np.isfinite(grad)) and np.abs(grad).sum() > 0


def test_bad_inputs_are_named():
  with pytest.raises(ValueError, match="Batch sizes"):
    contrastive.supervised_contrastive(np.zeros((4, 3)), np.zeros(5, int), temperature=0.1)
  with pytest.raises(ValueError, match="integer class ids"):
    contrastive.supervised_contrastive(np.zeros((4, 3)), np.zeros(4), temperature=0.1)
  with pytest.raises(ValueError, match="temperature"):
    contrastive.supervised_contrastive(np.zeros((4, 3)), np.zeros(4, int), temperature=0.0)
