"""ViT sizes against DeiT / timm, attention against NumPy, forward on real 28×28×1 images."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kd_jax.models import get_model, summary
from kd_jax.models.attention import SelfAttention
from kd_jax.models.summary import abstract_variables, count_parameters

IMAGENET = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)


@pytest.mark.parametrize(
    "name,params,macs_g",
    [
        # timm's exact counts for vit_tiny/small_patch16_224 (DeiT-Ti / DeiT-S, Touvron et al. 2021,
        # Table 1: 5M / 22M params, 1.3 / 4.6 GFLOPs, which are multiply-adds).
        ("vit_tiny", 5_717_416, "1.3"),
        ("vit_small", 22_050_664, "4.6"),
    ],
)
def test_imagenet_sizes_match_deit(name, params, macs_g):
  model = get_model(name, patch_size=16, num_classes=1000)
  assert count_parameters(abstract_variables(model, IMAGENET)["params"]) == params
  report = summary(model, IMAGENET, compile=False)
  assert abs(report["macs"] / 1e9 - float(macs_g)) <= 0.05


def numpy_attention(x, params, heads, key_mask):
  """softmax(Q Kᵀ/√d + mask) V from the equation, float64."""
  p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
  dense = lambda t, name: t @ p[name]["kernel"] + p[name]["bias"]
  b, n, h = x.shape
  d = h // heads
  split = lambda t: t.reshape(b, n, heads, d).transpose(0, 2, 1, 3)
  q, k, v = (split(dense(x, name)) for name in ("query", "key", "value"))
  logits = q @ k.transpose(0, 1, 3, 2) / np.sqrt(d)
  logits = np.where(key_mask[:, None, None, :] > 0, logits, -np.inf)
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  context = (probs @ v).transpose(0, 2, 1, 3).reshape(b, n, h)
  return dense(context, "out"), probs


def test_self_attention_matches_numpy():
  x = np.random.default_rng(0).normal(size=(2, 5, 16)).astype(np.float32)
  key_mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
  layer = SelfAttention(num_heads=4)
  params = layer.init(jax.random.PRNGKey(0), x, key_mask, train=False)
  out, probs = layer.apply(params, x, key_mask, train=False)
  ref_out, ref_probs = numpy_attention(x.astype(np.float64), params["params"], 4, key_mask)
  np.testing.assert_allclose(probs, ref_probs, atol=1e-6)
  np.testing.assert_allclose(out, ref_out, atol=1e-5)


@pytest.fixture(scope="module")
def micro_vit(fashion_images):
  model = get_model("vit_micro", num_classes=10, patch_size=4)
  variables = jax.jit(lambda k, x: model.init(k, x, train=False))(
      jax.random.PRNGKey(0), fashion_images[:1]
  )
  return model, variables


def test_vit_on_real_grayscale_images(micro_vit, fashion_images):
  model, variables = micro_vit
  out = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, fashion_images)
  tokens = 1 + (28 // 4) ** 2
  assert out["logits"].shape == (8, 10) and out["embedding"].shape == (8, 64)
  assert [f.shape for f in out["features"]] == [(8, tokens, 64)] * 4
  assert [a.shape for a in out["attentions"]] == [(8, 4, tokens, tokens)] * 4
  np.testing.assert_allclose(np.asarray(out["attentions"][-1]).sum(-1), 1.0, rtol=1e-5)
  assert np.isfinite(np.asarray(out["embedding"])).all()


def test_vit_bfloat16_and_errors(micro_vit, fashion_images):
  model, variables = micro_vit
  out16 = model.clone(dtype=jnp.bfloat16).apply(variables, fashion_images[:2], train=False)
  out32 = model.apply(variables, fashion_images[:2], train=False)
  assert out16["features"][0].dtype == jnp.bfloat16
  assert out16["attentions"][0].dtype == jnp.float32  # softmax stays float32
  np.testing.assert_allclose(
      out16["embedding"].astype(np.float32),
      out32["embedding"],
      atol=0.1 * float(np.abs(out32["embedding"]).max()),
  )
  with pytest.raises(ValueError, match="not divisible by patch size 5"):
    get_model("vit_micro", patch_size=5).init(
        jax.random.PRNGKey(0), fashion_images[:1], train=False
    )
