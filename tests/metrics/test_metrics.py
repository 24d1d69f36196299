"""Accuracy, fidelity, calibration, CKA and AUPRC against independent NumPy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kd_jax import metrics as M


def softmax(z):
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def test_accuracy_and_agreement_match_definitions():
  rng = np.random.default_rng(0)
  s, t = rng.normal(size=(2, 50, 10))
  y = rng.integers(0, 10, 50)
  np.testing.assert_array_equal(M.accuracy(s, y), (s.argmax(1) == y).astype(np.float32))
  np.testing.assert_array_equal(M.top_k_agreement(s, t), (s.argmax(1) == t.argmax(1)))


@pytest.mark.parametrize("k", [1, 2, 5])
def test_top_k_agreement_is_overlap_of_top_k_sets(k):
  rng = np.random.default_rng(k)
  s, t = rng.normal(size=(2, 20, 8))
  expected = [len(set(np.argsort(-a)[:k]) & set(np.argsort(-b)[:k])) / k for a, b in zip(s, t)]
  np.testing.assert_allclose(M.top_k_agreement(s, t, k=k), expected)
  np.testing.assert_array_equal(M.top_k_agreement(s, s, k=k), 1.0)


def test_predictive_kl_matches_definition_and_is_zero_for_equal_logits():
  rng = np.random.default_rng(1)
  t, s = rng.normal(size=(2, 6, 5)) * 2
  p, q = softmax(t), softmax(s)
  np.testing.assert_allclose(M.predictive_kl(t, s), np.sum(p * np.log(p / q), -1), rtol=1e-5)
  np.testing.assert_allclose(M.predictive_kl(t, t), 0.0, atol=1e-6)


def ece_reference(logits, labels, bins):
  p = softmax(logits)
  conf, pred = p.max(1), p.argmax(1)
  edges = np.linspace(0, 1, bins + 1)
  total = 0.0
  for lo, hi in zip(edges[:-1], edges[1:]):
    inside = (conf > lo) & (conf <= hi)
    if inside.any():
      total += inside.mean() * abs((pred[inside] == labels[inside]).mean() - conf[inside].mean())
  return total


@pytest.mark.parametrize("bins", [1, 10, 15])
def test_expected_calibration_error_matches_reference(bins):
  rng = np.random.default_rng(bins)
  z = rng.normal(size=(200, 10)) * 3
  y = rng.integers(0, 10, 200)
  np.testing.assert_allclose(
      M.expected_calibration_error(z, y, num_bins=bins),
      ece_reference(z, y, bins),
      rtol=1e-4,
      atol=1e-6,
  )


def test_ece_mask_drops_padding():
  rng = np.random.default_rng(2)
  z, y = rng.normal(size=(30, 4)), rng.integers(0, 4, 30)
  mask = np.arange(30) < 20
  np.testing.assert_allclose(
      M.expected_calibration_error(z, y, mask=mask),
      ece_reference(z[:20], y[:20], 15),
      rtol=1e-4,
      atol=1e-6,
  )


def cka_reference(x, y):
  # HSIC form with the centring matrix H: CKA = tr(KHLH) / sqrt(tr(KHKH) tr(LHLH)).
  n = len(x)
  h = np.eye(n) - np.ones((n, n)) / n
  k, l = x @ x.T, y @ y.T
  hsic = lambda a, b: np.trace(a @ h @ b @ h)
  return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


def test_linear_cka_matches_hsic_form_and_invariances():
  rng = np.random.default_rng(3)
  x = rng.normal(size=(40, 6))
  y = x @ rng.normal(size=(6, 9)) + 0.5 * rng.normal(size=(40, 9))
  np.testing.assert_allclose(M.linear_cka(x, y), cka_reference(x, y), rtol=1e-4)
  q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
  np.testing.assert_allclose(M.linear_cka(x, 3 * x @ q + 1), 1.0, rtol=1e-4)
  np.testing.assert_allclose(
      M.linear_cka(x[:30], y[:30]), M.linear_cka(x, y, mask=np.arange(40) < 30), rtol=1e-4
  )


def average_precision_reference(scores, targets):
  # Σ_n (R_n − R_{n−1}) P_n over distinct thresholds, highest first.
  total, prev_recall, positives = 0.0, 0.0, targets.sum()
  for threshold in np.unique(scores)[::-1]:
    chosen = scores >= threshold
    tp = targets[chosen].sum()
    recall = tp / positives
    total += (recall - prev_recall) * tp / chosen.sum()
    prev_recall = recall
  return total


def test_auprc_micro_and_macro_match_reference_with_ties():
  rng = np.random.default_rng(4)
  scores = np.round(rng.uniform(size=(60, 8)), 1)  # rounding creates many ties
  targets = (rng.uniform(size=(60, 8)) < 0.3).astype(np.float32)
  targets[:, 5] = 0  # a class without positives is left out of the macro mean
  np.testing.assert_allclose(
      M.auprc(scores, targets, average="micro"),
      average_precision_reference(scores.ravel(), targets.ravel()),
      rtol=1e-5,
  )
  per_class = [average_precision_reference(scores[:, c], targets[:, c]) for c in range(8) if c != 5]
  np.testing.assert_allclose(
      M.auprc(scores, targets, average="macro"), np.mean(per_class), rtol=1e-5
  )


def test_auprc_agrees_with_scikit_learn():
  metrics = pytest.importorskip("sklearn.metrics")
  rng = np.random.default_rng(5)
  scores = rng.uniform(size=(50, 6))
  targets = (rng.uniform(size=(50, 6)) < 0.4).astype(int)
  np.testing.assert_allclose(
      M.auprc(scores, targets, average="micro"),
      metrics.average_precision_score(targets, scores, average="micro"),
      rtol=1e-5,
  )
  np.testing.assert_allclose(
      M.auprc(scores, targets, average="macro"),
      metrics.average_precision_score(targets, scores, average="macro"),
      rtol=1e-5,
  )


def test_auprc_mask_drops_padded_rows_and_perfect_ranking_scores_one():
  rng = np.random.default_rng(6)
  scores, targets = rng.uniform(size=(20, 3)), (rng.uniform(size=(20, 3)) < 0.5).astype(float)
  mask = np.arange(20) < 12
  np.testing.assert_allclose(
      M.auprc(scores, targets, mask=mask), M.auprc(scores[:12], targets[:12]), rtol=1e-6
  )
  np.testing.assert_allclose(M.auprc(targets + 0.1 * scores, targets), 1.0)


@pytest.mark.parametrize(
    "fn",
    [
        lambda s, t, y: M.accuracy(s, y),
        lambda s, t, y: M.top_k_agreement(s, t, k=2),
        lambda s, t, y: M.predictive_kl(t, s),
        lambda s, t, y: M.expected_calibration_error(s, y),
        lambda s, t, y: M.linear_cka(s, t),
        lambda s, t, y: M.auprc(s, (t > 0).astype(jnp.float32), average="macro"),
    ],
)
def test_metrics_jit_and_bfloat16(fn):
  rng = np.random.default_rng(7)
  s, t = rng.normal(size=(2, 12, 5)).astype(np.float32)
  y = rng.integers(0, 5, 12)
  eager = fn(s, t, y)
  np.testing.assert_allclose(jax.jit(fn)(s, t, y), eager, rtol=1e-5, atol=1e-6)
  assert fn(jnp.asarray(s, jnp.bfloat16), jnp.asarray(t, jnp.bfloat16), y).dtype == jnp.float32


def test_metric_errors_name_shapes():
  with pytest.raises(ValueError, match=r"\(4, 10\).*\(4, 11\)"):
    M.top_k_agreement(np.zeros((4, 10)), np.zeros((4, 11)))
  with pytest.raises(ValueError, match=r"\(5, 3\).*\(4, 3\)"):
    M.linear_cka(np.zeros((5, 3)), np.zeros((4, 3)))
  with pytest.raises(ValueError, match="average"):
    M.auprc(np.zeros((4, 2)), np.zeros((4, 2)), average="weighted")
