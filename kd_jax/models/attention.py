"""Multi-head self-attention that returns its attention probabilities (for AMAD and TinyBERT).

`A_h = softmax(Q_h K_hᵀ / √d_k + M) ∈ R^{q×k}` per head h (Vaswani et al., 2017), where the mask
term M is 0 for keys that may be attended and the most negative float32 for the others — the
same additive mask Hugging Face's BERT uses, so fully padded rows match it too. The logits and the
softmax are computed in float32 even when the model runs in bfloat16 (AMAD compares these maps
across models, PAPERS.md §3). The returned `A` is exactly what multiplies the values, before
dropout, so a distiller sees the probabilities, not a dropped-out copy.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

MASK_VALUE = float(jnp.finfo(jnp.float32).min)


class SelfAttention(nn.Module):
  """Projections `query`, `key`, `value` (hidden → hidden) and `out`, heads split evenly.

  Call with x [batch, length, hidden] and an optional key mask [batch, length] (1 = attend).
  Returns (output [batch, length, hidden], probabilities [batch, heads, length, length]).
  """

  num_heads: int
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32
  kernel_init: Any = nn.initializers.lecun_normal()

  @nn.compact
  def __call__(self, x: jnp.ndarray, key_mask: jnp.ndarray | None = None, *,
               train: bool) -> tuple[jnp.ndarray, jnp.ndarray]:
    batch, length, hidden = x.shape
    if hidden % self.num_heads:
      raise ValueError(f"hidden size {hidden} is not divisible by {self.num_heads} heads")
    head_dim = hidden // self.num_heads
    dense = lambda name: nn.Dense(hidden, dtype=self.dtype, kernel_init=self.kernel_init,
                                  name=name)
    split = lambda t: t.reshape(batch, length, self.num_heads, head_dim)
    query, key, value = (split(dense(n)(x)) for n in ("query", "key", "value"))
    logits = jnp.einsum("bqhd,bkhd->bhqk", query.astype(jnp.float32),
                        key.astype(jnp.float32)) / jnp.sqrt(jnp.float32(head_dim))
    if key_mask is not None:
      if key_mask.shape != (batch, length):
        raise ValueError(
            f"attention mask must be [batch, length] = {(batch, length)}, got "
            f"{tuple(key_mask.shape)}"
        )
      logits = jnp.where(key_mask[:, None, None, :] > 0, logits, MASK_VALUE)
    probabilities = nn.softmax(logits, axis=-1)
    weights = probabilities
    if self.dropout_rate > 0:
      weights = nn.Dropout(self.dropout_rate, deterministic=not train)(weights)
    context = jnp.einsum("bhqk,bkhd->bqhd", weights.astype(self.dtype), value)
    output = dense("out")(context.reshape(batch, length, hidden))
    return output, probabilities
