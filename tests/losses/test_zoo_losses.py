"""The method zoo's losses (DKD, DIST, PKT, SP, NST, VID, OFD, HCL) against NumPy written from each
paper's equation, and the identities that pin down what each one means."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import kd_jax.losses as L
from kd_jax.losses import feature_maps
from tests.losses import numpy_reference as ref
from tests.losses import numpy_zoo_reference as zoo

TOL = dict(rtol=1e-4, atol=1e-6)


def _logits(seed, batch=6, classes=10):
  rng = np.random.default_rng(seed)
  return (
      rng.normal(size=(batch, classes)) * 2,
      rng.normal(size=(batch, classes)) * 3,
      rng.integers(0, classes, size=batch),
  )


# ------------------------------------------------------------------ DKD
@pytest.mark.parametrize("classes,tau", [(2, 1.0), (10, 4.0), (100, 2.0)])
def test_tckd_and_nckd_match_reference(classes, tau):
  s, t, y = _logits(classes, classes=classes)
  # The log-probabilities are differences of float32 log-sum-exps of size ~log C: ~1e-6 absolute.
  tol = dict(rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(L.tckd(s, t, y, temperature=tau), zoo.tckd(s, t, y, tau), **tol)
  np.testing.assert_allclose(L.nckd(s, t, y, temperature=tau), zoo.nckd(s, t, y, tau), **tol)
  np.testing.assert_allclose(
      L.dkd(s, t, y, alpha=1.0, beta=8.0, temperature=tau),
      zoo.tckd(s, t, y, tau) + 8.0 * zoo.nckd(s, t, y, tau),
      **tol,
  )


def test_kd_is_tckd_plus_teacher_weighted_nckd():
  # DKD's Eq. 4: KD = TCKD + (1 − p^T_y)·NCKD — the coupling DKD removes.
  s, t, y = _logits(1)
  tau = 4.0
  p_target = ref.softmax(t / tau)[np.arange(len(y)), y]
  np.testing.assert_allclose(
      L.hinton_kd(s, t, temperature=tau),
      L.tckd(s, t, y, temperature=tau) + (1 - p_target) * L.nckd(s, t, y, temperature=tau),
      rtol=1e-4,
      atol=1e-5,
  )


def test_dkd_is_finite_with_a_confident_teacher_and_its_gradient_too():
  s, t, y = _logits(2)
  t = t.copy()
  t[np.arange(len(y)), y] = 500.0  # p^T_y = 1 in float32: 1 − p_y must come from log space
  value = L.dkd(s, t, y, alpha=1.0, beta=8.0, temperature=1.0)
  grad = jax.grad(lambda x: jnp.sum(L.dkd(x, t, y, alpha=1.0, beta=8.0, temperature=1.0)))(s)
  assert np.all(np.isfinite(value)) and np.all(np.isfinite(grad))
  np.testing.assert_allclose(value, zoo.tckd(s, t, y, 1.0) + 8 * zoo.nckd(s, t, y, 1.0), **TOL)


def test_dkd_names_bad_inputs():
  s, t, y = _logits(3)
  with pytest.raises(ValueError, match=r"labels have shape \(5,\)"):
    L.tckd(s, t, y[:5], temperature=4.0)
  with pytest.raises(ValueError, match="at least 2 classes"):
    L.nckd(s[:, :1], t[:, :1], np.zeros(6, int), temperature=4.0)
  with pytest.raises(ValueError, match="temperature"):
    L.dkd(s, t, y, alpha=1.0, beta=1.0, temperature=0.0)


# ------------------------------------------------------------------ DIST
@pytest.mark.parametrize("tau", [1.0, 4.0])
def test_dist_relations_match_reference(tau):
  s, t, _ = _logits(4, batch=8, classes=5)
  np.testing.assert_allclose(
      L.dist_inter_class(s, t, temperature=tau), zoo.dist_inter(s, t, tau), **TOL
  )
  out = L.dist_intra_class(s, t, temperature=tau)
  assert out.shape == (5,)
  np.testing.assert_allclose(out, zoo.dist_intra(s, t, tau), **TOL)


def test_dist_ignores_affine_changes_of_the_probabilities():
  # Pearson correlation: a student whose probabilities are an affine image of the teacher's (not
  # equal to them) already has zero inter-class loss, which exact KL matching would not give.
  t = np.random.default_rng(5).normal(size=(4, 6))
  y_t = ref.softmax(t)
  s = np.log(0.5 * y_t + 0.5 / 6)  # softmax(s) = 0.5·y_t + 0.5/6
  np.testing.assert_allclose(L.dist_inter_class(s, t, temperature=1.0), 0.0, atol=1e-5)
  assert np.all(L.kl_from_logits(t, s) > 1e-3)


def test_dist_intra_class_needs_a_batch():
  with pytest.raises(ValueError, match="at least 2"):
    L.dist_intra_class(np.zeros((1, 4)), np.zeros((1, 4)), temperature=4.0)
  with pytest.raises(ValueError, match="rank 2"):
    L.dist_inter_class(np.zeros((2, 3, 4)), np.zeros((2, 3, 4)), temperature=4.0)


# ------------------------------------------------------------------ PKT, SP
@pytest.mark.parametrize("batch,ds,dt", [(2, 3, 3), (7, 5, 9)])
def test_pkt_matches_reference_and_is_scale_free(batch, ds, dt):
  rng = np.random.default_rng(batch)
  s, t = rng.normal(size=(batch, ds)), rng.normal(size=(batch, dt))
  np.testing.assert_allclose(L.pkt(s, t), zoo.pkt(s, t), **TOL)
  np.testing.assert_allclose(L.pkt(3.0 * t, t), 0.0, atol=1e-6)  # cosine kernel: scale-free


@pytest.mark.parametrize(
    "s_shape,t_shape", [((5, 4, 4, 3), (5, 4, 4, 8)), ((4, 6), (4, 2, 2, 5)), ((2, 3), (2, 3))]
)
def test_similarity_preserving_matches_reference(s_shape, t_shape):
  rng = np.random.default_rng(len(s_shape))
  s, t = rng.normal(size=s_shape), rng.normal(size=t_shape)
  np.testing.assert_allclose(L.similarity_preserving(s, t), zoo.similarity_preserving(s, t), **TOL)


def test_similarity_preserving_compares_relations_not_activations():
  rng = np.random.default_rng(6)
  t = rng.normal(size=(5, 3, 3, 4))
  np.testing.assert_allclose(L.similarity_preserving(2.0 * t, t), 0.0, atol=1e-6)
  with pytest.raises(ValueError, match=r"Batch sizes.*\(4, 3\).*\(5, 3\)"):
    L.similarity_preserving(np.zeros((4, 3)), np.zeros((5, 3)))


# ------------------------------------------------------------------ NST
@pytest.mark.parametrize("degree,offset", [(2, 0.0), (1, 0.0), (3, 0.5)])
def test_nst_matches_reference(degree, offset):
  rng = np.random.default_rng(degree)
  s, t = rng.normal(size=(3, 4, 4, 5)), rng.normal(size=(3, 4, 4, 7))
  np.testing.assert_allclose(
      L.nst_mmd(s, t, degree=degree, offset=offset), zoo.nst(s, t, degree, offset), **TOL
  )


def test_nst_is_zero_for_the_same_channel_patterns_in_any_order_and_scale():
  t = np.random.default_rng(7).normal(size=(2, 3, 3, 4))
  s = 5.0 * t[..., ::-1]  # channels permuted and rescaled: the same set of patterns
  np.testing.assert_allclose(L.nst_mmd(s, t), 0.0, atol=1e-6)
  with pytest.raises(ValueError, match="same batch and spatial size"):
    L.nst_mmd(np.zeros((2, 4, 4, 3)), np.zeros((2, 2, 2, 3)))


# ------------------------------------------------------------------ VID
def test_vid_matches_reference_and_softplus_initialisation():
  rng = np.random.default_rng(8)
  mean, t = rng.normal(size=(2, 3, 3, 4)), rng.normal(size=(2, 3, 3, 4))
  raw = rng.normal(size=4)
  np.testing.assert_allclose(L.vid_nll(mean, t, raw), zoo.vid(mean, t, raw), **TOL)
  alpha = feature_maps.vid_raw_variance(5.0)
  np.testing.assert_allclose(feature_maps.vid_variance(jnp.full((3,), alpha)), 5.0, rtol=1e-6)


def test_vid_variance_learns_the_residual_scale():
  # The NLL is minimised at σ² = mean squared residual of the channel: what VID's variance learns.
  rng = np.random.default_rng(9)
  t = rng.normal(size=(64, 2, 2, 1))
  mean = t + 0.5 * rng.normal(size=t.shape)
  grid = np.linspace(-3, 3, 601)
  losses = jax.vmap(lambda a: jnp.mean(L.vid_nll(mean, t, a[None])))(jnp.asarray(grid))
  best_variance = float(feature_maps.vid_variance(np.array([grid[int(np.argmin(losses))]]))[0])
  np.testing.assert_allclose(best_variance, np.mean((t - mean) ** 2), rtol=0.02)
  with pytest.raises(ValueError, match="Channels"):
    L.vid_nll(mean, t, np.zeros(3))


# ------------------------------------------------------------------ OFD
def test_ofd_margin_matches_reference_and_is_the_mean_of_negative_responses():
  scale = np.array([1.0, -2.0, 0.5, 1.0, 0.1])
  bias = np.array([0.0, 1.0, -0.3, 4.0, 2.0])  # the last two have almost no negative mass
  margin = feature_maps.ofd_margin(scale, bias)
  np.testing.assert_allclose(margin, zoo.ofd_margin(scale, bias), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(margin[-2:], [-3.0, -0.3], rtol=1e-6)
  samples = np.random.default_rng(10).normal(loc=1.0, scale=2.0, size=400_000)
  np.testing.assert_allclose(margin[1], samples[samples < 0].mean(), rtol=0.01)


def test_ofd_partial_l2_matches_reference():
  rng = np.random.default_rng(11)
  s, t = rng.normal(size=(3, 2, 3, 4)), rng.normal(size=(3, 2, 3, 4))
  margin = -np.abs(rng.normal(size=4))
  np.testing.assert_allclose(
      L.ofd_partial_l2(s, t, margin), zoo.ofd_partial_l2(s, t, margin), **TOL
  )


def test_ofd_partial_l2_ignores_students_below_a_negative_target():
  t = np.array([-1.0, -1.0, 2.0, -3.0]).reshape(1, 1, 1, 4)
  margin = np.full(4, -2.0)
  s = np.array([-5.0, 0.5, 2.0, -2.0]).reshape(1, 1, 1, 4)
  # element 0: s ≤ T = −1 ≤ 0, no loss; 1: above the negative target, (−1 − 0.5)²;
  # 2: equal; 3: the target is raised to the margin −2 = s, no loss.
  np.testing.assert_allclose(L.ofd_partial_l2(s, t, margin), [2.25], rtol=1e-6)


# ------------------------------------------------------------------ HCL
@pytest.mark.parametrize("size", [1, 2, 7, 8])
def test_hcl_matches_reference(size):
  rng = np.random.default_rng(size)
  s, t = rng.normal(size=(2, size, size, 3)), rng.normal(size=(2, size, size, 3))
  np.testing.assert_allclose(L.hcl(s, t), zoo.hcl(s, t), **TOL)


def test_adaptive_pooling_of_seven_to_four_overlaps_like_the_definition():
  x = np.arange(49, dtype=np.float64).reshape(1, 7, 7, 1)
  pooled = feature_maps.adaptive_avg_pool(x, 4)
  np.testing.assert_allclose(pooled[0, ..., 0], zoo.adaptive_avg_pool(x[0], 4)[..., 0], rtol=1e-6)
  with pytest.raises(ValueError, match="equal shape"):
    L.hcl(np.zeros((2, 4, 4, 3)), np.zeros((2, 4, 4, 5)))
