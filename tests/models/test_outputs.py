"""Requested outputs and the fused attention path: the explicit path's numbers, f32 and bf16."""

import dataclasses
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kd_jax.models import attention, bert, get_model, model_names

SMALL = bert.BertConfig(
    vocab_size=50,
    hidden_size=32,
    num_layers=2,
    num_heads=4,
    intermediate_size=64,
    max_position_embeddings=16,
    hidden_dropout=0.0,
    attention_dropout=0.0,
)
IDS = np.array([[5, 7, 9, 11, 3, 0], [4, 8, 2, 0, 0, 0]], np.int32)  # 0 = padding
BATCH = {
    "input_ids": IDS,
    "attention_mask": (IDS > 0).astype(np.int32),
    "token_type_ids": np.array([[0, 0, 0, 1, 1, 0], [0, 0, 1, 0, 0, 0]], np.int32),
}
# The second row is fully masked: both paths must give HF's uniform attention there.
KEY_MASK = np.array([[1, 1, 1, 1, 0], [0, 0, 0, 0, 0], [1, 0, 1, 0, 1]])


@pytest.fixture(scope="module")
def small_bert():
  model = bert.BertEncoder(SMALL, num_classes=3)
  variables = model.init(jax.random.PRNGKey(0), BATCH, train=False)
  return model, variables


def spy_on_fused(monkeypatch) -> list:
  calls = []
  fused = jax.nn.dot_product_attention

  def spy(*args, **kwargs):
    calls.append(kwargs.get("implementation"))
    return fused(*args, **kwargs)

  monkeypatch.setattr(jax.nn, "dot_product_attention", spy)
  return calls


@pytest.mark.parametrize("dtype,atol", [(jnp.float32, 1e-5), (jnp.bfloat16, 3e-2)])
def test_fused_attention_equals_explicit(monkeypatch, dtype, atol):
  x = np.random.default_rng(0).normal(size=(3, 5, 16)).astype(np.float32)
  layer = attention.SelfAttention(num_heads=4, dtype=dtype)
  params = layer.init(jax.random.PRNGKey(0), x, KEY_MASK, train=False)
  calls = spy_on_fused(monkeypatch)
  explicit, probabilities = layer.apply(params, x, KEY_MASK, train=False)
  assert not calls and probabilities.dtype == jnp.float32
  fused, none = layer.apply(params, x, KEY_MASK, train=False, return_probabilities=False)
  assert calls == [None] and none is None and fused.dtype == dtype
  np.testing.assert_allclose(
      np.asarray(fused, np.float32), np.asarray(explicit, np.float32), atol=atol, rtol=0
  )
  if dtype == jnp.bfloat16:  # and the bf16 fused output stays near the float32 one
    reference, _ = layer.clone(dtype=jnp.float32).apply(params, x, KEY_MASK, train=False)
    np.testing.assert_allclose(np.asarray(fused, np.float32), reference, atol=atol, rtol=0)


@pytest.mark.parametrize("dtype,atol", [(jnp.float32, 1e-5), (jnp.bfloat16, 5e-2)])
def test_bert_requested_outputs_match_full_outputs(small_bert, monkeypatch, dtype, atol):
  model, variables = small_bert
  model = model.clone(dtype=dtype)
  full = model.apply(variables, BATCH, train=False)
  assert set(full) == set(bert.BertEncoder.OUTPUTS)
  calls = spy_on_fused(monkeypatch)
  some = model.apply(variables, BATCH, train=False, outputs=("logits", "embedding", "features"))
  assert list(some) == ["logits", "embedding", "features"]
  assert len(calls) == SMALL.num_layers  # no maps asked for: every layer took the fused path
  for key in ("logits", "embedding"):
    np.testing.assert_allclose(some[key], full[key], atol=atol, rtol=0, err_msg=key)
  np.testing.assert_allclose(
      np.asarray(some["features"][-1], np.float32),
      np.asarray(full["features"][-1], np.float32),
      atol=atol,
      rtol=0,
  )


def test_fused_and_explicit_gradients_agree(small_bert):
  model, variables = small_bert

  def loss(params, outputs):
    out = model.apply({"params": params}, BATCH, train=True, outputs=outputs)
    return jnp.sum(out["logits"] ** 2) + jnp.sum(out["embedding"] ** 2)

  fused = jax.grad(loss)(variables["params"], ("logits", "embedding"))
  explicit = jax.grad(loss)(variables["params"], ("logits", "embedding", "attentions"))
  for a, b in zip(jax.tree.leaves(fused), jax.tree.leaves(explicit)):
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4)


def test_attention_dropout_in_training_keeps_the_explicit_path(small_bert, monkeypatch):
  """jax.nn.dot_product_attention has no dropout: with attention dropout active the model keeps
  BERT's dropout on the probabilities, so asking for maps or not gives the same numbers."""
  model, variables = small_bert
  model = model.clone(config=dataclasses.replace(SMALL, attention_dropout=0.3))
  rngs = {"dropout": jax.random.PRNGKey(1)}
  calls = spy_on_fused(monkeypatch)
  lean = model.apply(variables, BATCH, train=True, outputs=("embedding",), rngs=rngs)
  full = model.apply(variables, BATCH, train=True, rngs=rngs)
  assert not calls
  np.testing.assert_allclose(lean["embedding"], full["embedding"], atol=1e-6, rtol=0)
  # In evaluation the dropout is off, so the fused path is used again.
  model.apply(variables, BATCH, train=False, outputs=("embedding",))
  assert len(calls) == SMALL.num_layers


def test_vit_fused_path_matches(monkeypatch):
  model = get_model("vit_micro", num_classes=10, patch_size=4)
  images = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype(np.float32)
  variables = model.init(jax.random.PRNGKey(0), images, train=False)
  variables = jax.tree.map(lambda v: v + 0.01, variables)  # a non-zero classifier
  full = model.apply(variables, images, train=False)
  calls = spy_on_fused(monkeypatch)
  lean = model.apply(variables, images, train=False, outputs=["logits"])
  assert list(lean) == ["logits"] and len(calls) == 4
  np.testing.assert_allclose(lean["logits"], full["logits"], atol=1e-5, rtol=0)


def test_unknown_output_names_are_refused():
  model = get_model("resnet8", num_classes=10)
  x = jnp.zeros((1, 8, 8, 3))
  variables = model.init(jax.random.PRNGKey(0), x, train=False)
  assert list(model.apply(variables, x, train=False, outputs="embedding")) == ["embedding"]
  with pytest.raises(ValueError, match=r"cannot return \['attentions'\]"):
    model.apply(variables, x, train=False, outputs=("logits", "attentions"))


@pytest.mark.parametrize("name", model_names())
def test_every_model_accepts_outputs(name):
  """The engine passes `outputs=` whenever `__call__` accepts it: every zoo model does."""
  model = get_model(
      name, **({"init_from": "scratch", "num_classes": 2} if name == "bert_classifier" else {})
  )
  assert "outputs" in inspect.signature(type(model).__call__).parameters
