"""AMAD, one-to-one and head-pooled attention losses against the NumPy reference."""

import numpy as np
import pytest

import kd_jax.losses as L
from tests.losses import numpy_reference as ref


def attention_maps(rng, batch, heads, q, k):
  return rng.dirichlet(np.ones(k), size=(batch, heads, q)).astype(np.float32)


SHAPES = [(1, 1, 1, 3, 3), (2, 4, 2, 5, 5), (3, 12, 4, 4, 6), (2, 3, 3, 6, 2)]


@pytest.mark.parametrize("batch,h_t,h_s,q,k", SHAPES)
@pytest.mark.parametrize(
    "variant,reference",
    [("mse", ref.amad_mse), ("kl", ref.amad_kl), ("token_kl", ref.amad_token_kl)],
)
def test_amad_matches_reference(batch, h_t, h_s, q, k, variant, reference):
  rng = np.random.default_rng(h_t * 10 + h_s)
  t, s = attention_maps(rng, batch, h_t, q, k), attention_maps(rng, batch, h_s, q, k)
  np.testing.assert_allclose(L.amad(t, s, variant=variant), reference(t, s), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("variant", ["mse", "kl", "token_kl"])
def test_amad_is_invariant_to_permuting_student_heads(variant):
  rng = np.random.default_rng(0)
  t, s = attention_maps(rng, 2, 6, 4, 5), attention_maps(rng, 2, 3, 4, 5)
  np.testing.assert_allclose(
      L.amad(t, s[:, [2, 0, 1]], variant=variant),
      L.amad(t, s, variant=variant),
      rtol=1e-5,
      atol=1e-7,
  )


def test_amad_with_one_head_each_is_distance_of_normalised_maps():
  rng = np.random.default_rng(1)
  t, s = attention_maps(rng, 3, 1, 4, 4), attention_maps(rng, 3, 1, 4, 4)
  expected = [
      np.sum((ref.normalize(a.ravel()) - ref.normalize(b.ravel())) ** 2) for a, b in zip(t, s)
  ]
  np.testing.assert_allclose(L.amad(t, s, variant="mse"), expected, rtol=1e-5)


def test_amad_is_not_zero_for_identical_head_sets():
  # The soft alignment spreads each teacher head over every student head (PAPERS.md §3).
  t = attention_maps(np.random.default_rng(2), 2, 4, 5, 5)
  assert np.all(L.amad(t, t, variant="mse") > 1e-3)


def test_amad_kl_query_mask_drops_padded_rows():
  rng = np.random.default_rng(3)
  t, s = attention_maps(rng, 2, 4, 5, 5), attention_maps(rng, 2, 2, 5, 5)
  mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
  np.testing.assert_allclose(
      L.amad(t, s, variant="kl", query_mask=mask), ref.amad_kl(t, s, mask), rtol=1e-4
  )


def test_amad_projection_eq11_matches_reference_and_maps_key_lengths():
  rng = np.random.default_rng(4)
  t, s = attention_maps(rng, 2, 4, 3, 6), attention_maps(rng, 2, 2, 3, 4)
  projection = {"kernel": np.abs(rng.normal(size=(6, 4))), "bias": np.full(6, 0.01)}
  s_tilde = ref.project(s, projection["kernel"], projection["bias"])
  np.testing.assert_allclose(
      L.amad(t, s, variant="kl", projection=projection), ref.amad_kl(t, s_tilde), rtol=1e-4
  )


def test_amad_errors_name_the_problem():
  t, s = np.zeros((2, 4, 5, 5)), np.zeros((2, 2, 5, 6))
  with pytest.raises(ValueError, match=r"Key lengths.*\(2, 4, 5, 5\).*\(2, 2, 5, 6\)"):
    L.amad(t, s)
  with pytest.raises(ValueError, match=r"Query lengths.*\(2, 4, 5, 5\).*\(2, 2, 4, 5\)"):
    L.amad(t, np.zeros((2, 2, 4, 5)))
  with pytest.raises(ValueError, match="variant"):
    L.amad(t, t, variant="cosine")
  with pytest.raises(ValueError, match="rank 4"):
    L.amad(t[0], t[0])


@pytest.mark.parametrize("kind", ["mse", "kl"])
def test_one_to_one_matches_reference_and_is_zero_on_equal_maps(kind):
  rng = np.random.default_rng(5)
  t, s = attention_maps(rng, 3, 4, 5, 6), attention_maps(rng, 3, 4, 5, 6)
  np.testing.assert_allclose(
      L.one_to_one_attention(t, s, kind=kind), ref.one_to_one(t, s, kind), rtol=1e-4, atol=1e-7
  )
  np.testing.assert_allclose(L.one_to_one_attention(t, t, kind=kind), 0.0, atol=1e-6)


def test_one_to_one_needs_equal_head_counts():
  with pytest.raises(
      ValueError, match=r"equal head counts.*12 heads.*\(2, 12, 4, 4\).*4 .*\(2, 4, 4, 4\)"
  ):
    L.one_to_one_attention(np.zeros((2, 12, 4, 4)), np.zeros((2, 4, 4, 4)))


def test_head_pooled_compares_mean_maps():
  rng = np.random.default_rng(6)
  t, s = attention_maps(rng, 2, 6, 3, 4), attention_maps(rng, 2, 2, 3, 4)
  expected = ref.one_to_one(t.mean(1, keepdims=True), s.mean(1, keepdims=True), "kl")
  np.testing.assert_allclose(L.head_pooled_attention(t, s, kind="kl"), expected, rtol=1e-4)
