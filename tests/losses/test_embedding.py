"""SEA embedding MSE, FitNets hints and cosine distance against the NumPy reference."""

import numpy as np
import pytest

import kd_jax.losses as L
from tests.losses import numpy_reference as ref


@pytest.mark.parametrize("batch,dim", [(1, 1), (4, 64), (7, 512)])
def test_embedding_mse_and_cosine_match_reference(batch, dim):
  rng = np.random.default_rng(dim)
  s, t = rng.normal(size=(2, batch, dim))
  np.testing.assert_allclose(L.embedding_mse(s, t), ref.embedding_mse(s, t), rtol=1e-5)
  np.testing.assert_allclose(
      L.cosine_distance(s, t), ref.cosine_distance(s, t), rtol=1e-4, atol=1e-6
  )
  np.testing.assert_allclose(L.embedding_mse(s, s), 0.0)
  np.testing.assert_allclose(L.cosine_distance(s, 2 * s), 0.0, atol=1e-6)


@pytest.mark.parametrize(
    "student_shape,teacher_shape", [((3, 8), (3, 16)), ((2, 4, 4, 8), (2, 4, 4, 32))]
)
def test_fitnets_hint_matches_reference(student_shape, teacher_shape):
  rng = np.random.default_rng(len(student_shape))
  s, t = rng.normal(size=student_shape), rng.normal(size=teacher_shape)
  kernel, bias = rng.normal(size=(student_shape[-1], teacher_shape[-1])), rng.normal(
      size=teacher_shape[-1]
  )
  out = L.fitnets_hint(s, t, {"kernel": kernel, "bias": bias})
  np.testing.assert_allclose(out, ref.fitnets(s, t, kernel, bias), rtol=1e-4)


@pytest.mark.parametrize("p", [1.0, 2.0, 4.0])
def test_attention_transfer_matches_reference(p):
  rng = np.random.default_rng(int(p))
  s, t = rng.normal(size=(3, 4, 4, 8)), rng.normal(size=(3, 4, 4, 16))
  np.testing.assert_allclose(
      L.attention_transfer(s, t, p=p), ref.attention_transfer(s, t, p), rtol=1e-4, atol=1e-9
  )
  # Equal maps up to a channel-independent scale: zero (the maps are normalised).
  np.testing.assert_allclose(L.attention_transfer(s, 3.0 * s, p=p), 0.0, atol=1e-9)
  with pytest.raises(ValueError, match=r"\(3, 4, 4, 8\).*\(3, 2, 2, 16\).*same"):
    L.attention_transfer(s, t[:, :2, :2])


def test_embedding_errors_name_both_shapes():
  with pytest.raises(ValueError, match=r"\(4, 64\).*\(4, 128\)"):
    L.embedding_mse(np.zeros((4, 64)), np.zeros((4, 128)))
  adapter = {"kernel": np.zeros((8, 16)), "bias": np.zeros(16)}
  with pytest.raises(ValueError, match=r"\(2, 4, 4, 8\).*\(2, 2, 2, 16\)"):
    L.fitnets_hint(np.zeros((2, 4, 4, 8)), np.zeros((2, 2, 2, 16)), adapter)
  with pytest.raises(ValueError, match="Student channels"):
    L.fitnets_hint(np.zeros((2, 4)), np.zeros((2, 16)), adapter)
  with pytest.raises(ValueError, match="adapter must be a dict"):
    L.fitnets_hint(np.zeros((2, 8)), np.zeros((2, 16)), np.zeros((8, 16)))
