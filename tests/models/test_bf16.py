"""The bf16 BERT training graph: no bf16 scatter-adds, attention matmuls on bf16 operands, and
gradients that agree with float32 (issue 15: the bf16 step was 10× slower than float32)."""

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kd_jax.models import bert

CONFIG = bert.BertConfig(
    vocab_size=64,
    hidden_size=32,
    num_layers=2,
    num_heads=4,
    intermediate_size=64,
    max_position_embeddings=16,
)
IDS = np.array([[5, 7, 9, 11, 3, 0, 0, 0], [4, 8, 2, 6, 1, 9, 12, 0]], np.int32)


def loss_fn(model, params, outputs, train):
  out = model.apply(
      {"params": params},
      IDS,
      train=train,
      outputs=outputs,
      rngs={"dropout": jax.random.PRNGKey(3)} if train else None,
  )
  return jnp.sum(out["logits"].astype(jnp.float32) ** 2)


@pytest.fixture(scope="module")
def params():
  model = bert.BertEncoder(CONFIG, num_classes=3)
  return model.init(jax.random.PRNGKey(0), IDS, train=False)["params"]


def cast(tree, dtype):
  return jax.tree.map(lambda a: a.astype(dtype), tree)


@pytest.mark.parametrize("outputs", [("logits",), ("logits", "attentions")])
def test_bf16_training_graph(params, outputs):
  """Even with every param cast to bf16 before `apply` (what the engine does), the embedding
  gradients are float32 scatter-adds or matmuls, and no [batch, heads, q, k] product runs on two
  float32 operands unless the maps themselves were asked for (AMAD's float32 logits)."""
  model = bert.BertEncoder(CONFIG, num_classes=3, dtype=jnp.bfloat16)
  grad = jax.jit(jax.grad(lambda p: loss_fn(model, p, outputs, True)))
  text = grad.lower(cast(params, jnp.bfloat16)).as_text()
  scatters = re.findall(r'"stablehlo.scatter"(?:.|\n)*?\) -> tensor<([^>]*)>', text)
  assert scatters and not any(s.endswith("bf16") for s in scatters), scatters
  attention_shape = f"2x{CONFIG.num_heads}x8x8"
  dots = re.findall(r"stablehlo.dot_general.*?: \(tensor<([^>]*)>, tensor<([^>]*)>\)", text)
  attention_dots = [d for d in dots if any(t.startswith(attention_shape) for t in d)]
  assert attention_dots
  f32_pairs = [d for d in attention_dots if d[0].endswith("f32") and d[1].endswith("f32")]
  if "attentions" in outputs:
    assert f32_pairs  # the maps' logits are float32 products of float32 Q and K
  else:
    assert not f32_pairs, f32_pairs


def test_bf16_gradients_agree_with_float32(params):
  config = dataclasses.replace(CONFIG, hidden_dropout=0.0, attention_dropout=0.0)
  f32 = bert.BertEncoder(config, num_classes=3)
  bf16 = f32.clone(dtype=jnp.bfloat16)
  g32 = jax.grad(lambda p: loss_fn(f32, p, ("logits",), True))(params)
  g16 = jax.grad(lambda p: loss_fn(bf16, p, ("logits",), True))(params)
  for path, a, b in zip(
      jax.tree_util.tree_leaves_with_path(g32), jax.tree.leaves(g32), jax.tree.leaves(g16)
  ):
    a, b = np.ravel(a), np.ravel(np.asarray(b, np.float32))
    if np.linalg.norm(a) < 1e-6:
      continue  # e.g. unused rows of the word table
    cosine = a @ b / np.linalg.norm(a) / np.linalg.norm(b)
    assert cosine > 0.99, (jax.tree_util.keystr(path[0]), cosine)
