"""Similarity KL (CompRess / ReAugKD), RKD and CC against the NumPy reference."""

import numpy as np
import pytest

import kd_jax.losses as L
from tests.losses import numpy_reference as ref


@pytest.mark.parametrize(
    "batch,anchors,ds,dt,per_example",
    [(1, 3, 2, 2, False), (5, 16, 8, 12, False), (4, 7, 6, 3, True)],
)
def test_similarity_kl_matches_reference(batch, anchors, ds, dt, per_example):
  rng = np.random.default_rng(batch + anchors)
  lead = (batch, anchors) if per_example else (anchors,)
  s, t = rng.normal(size=(batch, ds)), rng.normal(size=(batch, dt))
  sa, ta = rng.normal(size=lead + (ds,)), rng.normal(size=lead + (dt,))
  out = L.similarity_kl(s, sa, t, ta, temperature=0.2, student_temperature=0.5)
  np.testing.assert_allclose(out, ref.similarity_kl(s, sa, t, ta, 0.2, 0.5), rtol=1e-4, atol=1e-6)


def test_similarity_kl_default_student_temperature_is_the_teacher_one():
  rng = np.random.default_rng(0)
  s, sa, t, ta = rng.normal(size=(4, 3, 5))
  np.testing.assert_allclose(
      L.similarity_kl(s, sa, t, ta, temperature=0.04),
      ref.similarity_kl(s, sa, t, ta, 0.04, 0.04),
      rtol=1e-4,
      atol=1e-6,
  )


def test_similarity_kl_is_zero_when_student_equals_teacher_and_scale_free():
  rng = np.random.default_rng(1)
  emb, anchors = rng.normal(size=(6, 8)), rng.normal(size=(20, 8))
  np.testing.assert_allclose(
      L.similarity_kl(emb, anchors, 3.0 * emb, anchors, temperature=0.07), 0.0, atol=1e-5
  )
  # ReAugKD's form: teacher anchors on both sides.
  assert np.all(L.similarity_kl(emb[::-1], anchors, emb, anchors, temperature=0.07) > 0)


def test_similarity_kl_names_mismatched_anchor_counts_and_dims():
  s, t = np.zeros((4, 8)), np.zeros((4, 6))
  with pytest.raises(ValueError, match=r"Numbers of anchors.*\(10, 8\).*\(12, 6\)"):
    L.similarity_kl(s, np.zeros((10, 8)), t, np.zeros((12, 6)), temperature=0.1)
  with pytest.raises(ValueError, match=r"Student embedding dimensions.*\(4, 8\).*\(10, 5\)"):
    L.similarity_kl(s, np.zeros((10, 5)), t, np.zeros((10, 6)), temperature=0.1)
  with pytest.raises(ValueError, match=r"Batch sizes.*\(4, 8\).*\(3, 6\)"):
    L.similarity_kl(s, np.zeros((10, 8)), np.zeros((3, 6)), np.zeros((10, 6)), temperature=0.1)


@pytest.mark.parametrize("batch,ds,dt", [(2, 3, 3), (6, 5, 9), (9, 16, 4)])
def test_rkd_losses_match_reference(batch, ds, dt):
  rng = np.random.default_rng(batch)
  s, t = rng.normal(size=(batch, ds)) * 2, rng.normal(size=(batch, dt))
  np.testing.assert_allclose(L.rkd_distance(s, t), ref.rkd_distance(s, t), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(L.rkd_angle(s, t), ref.rkd_angle(s, t), rtol=1e-4, atol=1e-6)


def test_rkd_is_invariant_to_scale_and_translation():
  rng = np.random.default_rng(3)
  t = rng.normal(size=(7, 5))
  s = 4.0 * t + 1.5  # same geometry, other scale and origin
  np.testing.assert_allclose(L.rkd_distance(s, t), 0.0, atol=1e-5)
  np.testing.assert_allclose(L.rkd_angle(s, t), 0.0, atol=1e-5)


def test_rkd_needs_two_examples():
  with pytest.raises(ValueError, match="at least 2 examples"):
    L.rkd_distance(np.zeros((1, 3)), np.zeros((1, 3)))


@pytest.mark.parametrize("kernel", ["gaussian_taylor", "gaussian", "bilinear"])
def test_correlation_congruence_matches_reference(kernel):
  rng = np.random.default_rng(4)
  s, t = rng.normal(size=(6, 5)), rng.normal(size=(6, 8))
  out = L.correlation_congruence(s, t, kernel=kernel, gamma=0.4, order=2)
  np.testing.assert_allclose(
      out, ref.correlation_congruence(s, t, kernel, 0.4, 2), rtol=1e-4, atol=1e-7
  )


def test_taylor_kernel_converges_to_exact_gaussian():
  rng = np.random.default_rng(5)
  s, t = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
  exact = L.correlation_congruence(s, t, kernel="gaussian", gamma=0.4)
  np.testing.assert_allclose(
      L.correlation_congruence(s, t, kernel="gaussian_taylor", gamma=0.4, order=12),
      exact,
      rtol=1e-4,
      atol=1e-7,
  )


def test_correlation_congruence_rejects_unknown_kernel():
  with pytest.raises(ValueError, match="kernel"):
    L.correlation_congruence(np.zeros((3, 2)), np.zeros((3, 2)), kernel="cosine")


def test_rkd_rejects_different_batch_sizes():
  with pytest.raises(ValueError, match=r"\(4, 3\).*\(5, 3\)"):
    L.rkd_angle(np.zeros((4, 3)), np.zeros((5, 3)))
