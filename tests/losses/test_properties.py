"""Properties every loss must have: jit, vmap, grad, float32 output for bfloat16 input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import kd_jax.losses as L
from tests.losses.cases import CASES

NAMES = sorted(CASES)


def test_every_public_loss_is_covered():
  # A new loss added to kd_jax.losses without a property case makes this fail.
  covered = {name.split("_")[0] if name.startswith("amad") else name for name in CASES}
  assert set(L.__all__) <= covered | {"amad"}, set(L.__all__) - covered


@pytest.mark.parametrize("name", NAMES)
def test_output_shape_and_dtype(name):
  case = CASES[name]
  args = case.make(np.random.default_rng(0), 5)
  out = case.fn(*args)
  assert out.shape == ((7,) if case.per_class else (5,) if case.per_example else ())
  assert out.dtype == jnp.float32
  assert np.all(np.isfinite(out))


@pytest.mark.parametrize("name", NAMES)
def test_jit_matches_eager(name):
  case = CASES[name]
  args = case.make(np.random.default_rng(1), 4)
  np.testing.assert_allclose(jax.jit(case.fn)(*args), case.fn(*args), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_vmap_over_stacked_batches(name):
  case = CASES[name]
  first = case.make(np.random.default_rng(2), 4)
  second = case.make(np.random.default_rng(3), 4)
  stacked = [np.stack([a, b]) for a, b in zip(first, second)]
  out = jax.vmap(case.fn)(*stacked)
  np.testing.assert_allclose(out[0], case.fn(*first), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out[1], case.fn(*second), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_are_finite_and_nonzero(name):
  case = CASES[name]
  args = case.make(np.random.default_rng(4), 4)
  grads = jax.grad(lambda *a: jnp.sum(case.fn(*a)), argnums=tuple(range(len(args))))(*args)
  flat = np.concatenate([np.ravel(g) for g in grads])
  assert np.all(np.isfinite(flat))
  assert np.any(flat != 0)


@pytest.mark.parametrize("name", NAMES)
def test_bfloat16_inputs_give_float32_close_to_float32_result(name):
  case = CASES[name]
  args = case.make(np.random.default_rng(5), 4)
  low = [jnp.asarray(a, jnp.bfloat16) for a in args]
  out = case.fn(*low)
  assert out.dtype == jnp.float32
  # Same computation on the bf16-rounded values in float32: the loss itself adds no bf16 error.
  rounded = [np.asarray(a.astype(jnp.float32)) for a in low]
  np.testing.assert_allclose(out, case.fn(*rounded), rtol=1e-5, atol=1e-6)
