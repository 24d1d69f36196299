"""Multi-head self-attention: fused by default, with attention probabilities when asked (AMAD).

`A_h = softmax(Q_h K_hᵀ / √d_k + M) ∈ R^{q×k}` per head h (Vaswani et al., 2017), where the mask
term M is 0 for keys that may be attended and a very negative number for the others — fully
padded rows then become uniform, as in Hugging Face's BERT, on both paths below.

Two paths compute the same output:

* **fused** (`return_probabilities=False`, no attention dropout in effect):
  `jax.nn.dot_product_attention`. XLA fuses it on CPU/GPU/TPU (bf16 inputs, f32 logits and
  softmax); `implementation="cudnn"` selects cuDNN's flash attention on NVIDIA GPUs (bf16/f16
  only). Nothing of size [batch, heads, q, k] is kept for the backward pass beyond what XLA needs.
* **explicit** (`return_probabilities=True`, or training with `dropout_rate > 0`): the logits and
  the softmax are computed in float32 from float32 copies of Q and K even when the model runs in
  bfloat16 — AMAD compares these maps across models (PAPERS.md §3). The returned `A` is exactly
  what multiplies the values, before dropout, so a distiller sees the probabilities, not a
  dropped-out copy.

Why training with attention dropout takes the explicit path: `jax.nn.dot_product_attention` has
no dropout argument, and dropout on the probabilities (`P ⊙ m / (1 − p)`, what BERT's checkpoints
were trained with) cannot be expressed through its bias or mask: a −∞ bias on dropped entries
renormalises each row (`P ⊙ m / Σ P ⊙ m`), a different regulariser with a different expected
output. Without the maps requested, that path still skips the float32 upcast of Q and K (bf16
inputs, float32 accumulation), so it costs what the XLA "fused" path costs plus the dropout mask.
Set the attention dropout to 0 (e.g. `bert_classifier(dropout=...)` or the config's
`attention_dropout`) to train on the fused path.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

MASK_VALUE = float(jnp.finfo(jnp.float32).min)
# Low-precision operands, float32 accumulation, in the forward and the backward products.
_LOW_PRECISION_PRESETS = {
    jnp.dtype(jnp.bfloat16): jax.lax.DotAlgorithmPreset.BF16_BF16_F32,
    jnp.dtype(jnp.float16): jax.lax.DotAlgorithmPreset.F16_F16_F32,
}


class SelfAttention(nn.Module):
  """Projections `query`, `key`, `value` (hidden → hidden) and `out`, heads split evenly.

  Call with x [batch, length, hidden] and an optional key mask [batch, length] (1 = attend).
  Returns (output [batch, length, hidden], probabilities [batch, heads, length, length] in
  float32, or None when `return_probabilities=False`).

  Attributes:
    implementation: `jax.nn.dot_product_attention`'s implementation for the fused path: None
      (XLA), "xla" or "cudnn" (NVIDIA GPUs, bf16/f16; raises where unsupported).
  """

  num_heads: int
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32
  kernel_init: Any = nn.initializers.lecun_normal()
  implementation: str | None = None

  @nn.compact
  def __call__(
      self,
      x: jnp.ndarray,
      key_mask: jnp.ndarray | None = None,
      *,
      train: bool,
      return_probabilities: bool = True,
  ) -> tuple[jnp.ndarray, jnp.ndarray | None]:
    batch, length, hidden = x.shape
    if hidden % self.num_heads:
      raise ValueError(f"hidden size {hidden} is not divisible by {self.num_heads} heads")
    if key_mask is not None and key_mask.shape != (batch, length):
      raise ValueError(
          f"attention mask must be [batch, length] = {(batch, length)}, got "
          f"{tuple(key_mask.shape)}"
      )
    head_dim = hidden // self.num_heads
    dense = lambda name: nn.Dense(hidden, dtype=self.dtype, kernel_init=self.kernel_init, name=name)
    split = lambda t: t.reshape(batch, length, self.num_heads, head_dim)
    query, key, value = (split(dense(n)(x)) for n in ("query", "key", "value"))
    dropout_active = train and self.dropout_rate > 0
    probabilities = None
    if return_probabilities or dropout_active:
      context, probabilities = self._explicit(
          query, key, value, key_mask, train=train, float32_logits=return_probabilities
      )
    else:
      mask = None if key_mask is None else (key_mask > 0)[:, None, None, :]
      context = jax.nn.dot_product_attention(
          query, key, value, mask=mask, implementation=self.implementation
      )
    output = dense("out")(context.reshape(batch, length, hidden))
    return output, probabilities if return_probabilities else None

  def _explicit(self, query, key, value, key_mask, *, train: bool, float32_logits: bool):
    """softmax(QKᵀ/√d + M) V with the probabilities materialised (and dropped out in training).

    `float32_logits` upcasts Q and K before the product (the maps a distiller compares); without
    it the product takes the compute dtype with float32 accumulation, as the fused path does.
    The explicit algorithm preset matters for the backward pass: with only
    `preferred_element_type=float32`, JAX transposes the product into float32 × float32 matmuls
    (bf16 operands upcast, jax-ml/jax#24047); `BF16_BF16_F32` keeps them on bf16 units.
    """
    if float32_logits:
      query, key = query.astype(jnp.float32), key.astype(jnp.float32)
    logits = jnp.einsum(
        "bqhd,bkhd->bhqk",
        query,
        key,
        preferred_element_type=jnp.float32,
        precision=_LOW_PRECISION_PRESETS.get(jnp.dtype(query.dtype)),
    )
    logits = logits / jnp.sqrt(jnp.float32(query.shape[-1]))
    if key_mask is not None:
      logits = jnp.where(key_mask[:, None, None, :] > 0, logits, MASK_VALUE)
    probabilities = nn.softmax(logits, axis=-1)
    weights = probabilities.astype(self.dtype)
    if self.dropout_rate > 0:
      weights = nn.Dropout(self.dropout_rate, deterministic=not train)(weights)
    return jnp.einsum("bhqk,bkhd->bqhd", weights, value), probabilities
