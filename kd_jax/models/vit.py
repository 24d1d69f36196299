"""A small Vision Transformer (Dosovitskiy et al., ICLR 2021) with attention probabilities out.

  z⁰ = [x_cls; P(x)] + E_pos        P: non-overlapping p×p patches, linear (a strided conv)
  z' = zˡ + MHA(LN(zˡ))             pre-LayerNorm blocks (eps 1e-6, as big_vision / timm)
  zˡ⁺¹ = z' + MLP(LN(z'))           MLP: Dense(mlp_dim) → gelu → Dense(hidden)
  embedding = LN(z^L)[cls]          (pooling="cls"), or the mean over patch tokens ("gap")

Each block's attention probabilities `[batch, heads, q, k]` (q = k = 1 + number of patches) are
returned for AMAD (PAPERS.md §3) when asked for (`outputs=None` or one that names "attentions");
otherwise attention runs on the fused path (`attention.py`). The position embedding is a learned
table sized at initialisation for the input's patch grid: any image size divisible by the patch
size works, but a model applies to the size it was initialised with.

Sizes (DeiT naming, Touvron et al. 2021): tiny 192/12 layers/3 heads, small 384/12/6; with
patch 4 they suit 32×32 images.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from kd_jax.models.attention import SelfAttention
from kd_jax.models.outputs import requested, select
from kd_jax.models.resnet import check_image_batch


class EncoderBlock(nn.Module):
  num_heads: int
  mlp_dim: int
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32
  attention_implementation: str | None = None

  @nn.compact
  def __call__(self, z, *, train: bool, return_probabilities: bool = True):
    drop = lambda t: nn.Dropout(self.dropout_rate, deterministic=not train)(t)
    attended, probabilities = SelfAttention(
        self.num_heads,
        self.dropout_rate,
        dtype=self.dtype,
        kernel_init=nn.initializers.xavier_uniform(),
        implementation=self.attention_implementation,
        name="attention",
    )(
        nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name="attention_norm")(z),
        train=train,
        return_probabilities=return_probabilities,
    )
    z = z + drop(attended)
    y = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name="mlp_norm")(z)
    y = nn.gelu(nn.Dense(self.mlp_dim, dtype=self.dtype, name="mlp_in")(y), approximate=False)
    y = nn.Dense(z.shape[-1], dtype=self.dtype, name="mlp_out")(drop(y))
    return z + drop(y), probabilities


class VisionTransformer(nn.Module):
  """Returns "logits" (float32, None without head), "embedding", "features" (each block's tokens
  [batch, 1 + patches, hidden]) and "attentions" (each block's [batch, heads, q, k]) — all with
  `outputs=None`, only the named ones otherwise (`kd_jax.models.outputs`).

  `attention_implementation`: the fused path's `jax.nn.dot_product_attention` implementation,
  None (XLA) or "cudnn" (NVIDIA GPUs, bf16).
  """

  patch_size: int = 4
  hidden_size: int = 192
  num_layers: int = 12
  num_heads: int = 3
  mlp_dim: int = 768
  num_classes: int | None = 100
  pooling: str = "cls"
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32
  attention_implementation: str | None = None

  OUTPUTS = ("logits", "embedding", "features", "attentions")

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool, outputs=None) -> dict[str, Any]:
    wanted = requested(outputs, self.OUTPUTS, "VisionTransformer")
    check_image_batch(x, "VisionTransformer")
    batch, height, width, _ = x.shape
    p = self.patch_size
    if height % p or width % p:
      raise ValueError(f"image size {height}×{width} is not divisible by patch size {p}")
    z = nn.Conv(
        self.hidden_size, (p, p), (p, p), padding="VALID", dtype=self.dtype, name="patch_embedding"
    )(jnp.asarray(x, self.dtype))
    z = z.reshape(batch, -1, self.hidden_size)
    cls = self.param("cls_token", nn.initializers.zeros, (1, 1, self.hidden_size))
    # zeros_like(z[:, :1]) + cls rather than broadcast_to: the copy inherits z's batch
    # sharding, which concatenate needs under explicit-sharding meshes.
    z = jnp.concatenate([jnp.zeros_like(z[:, :1]) + cls.astype(z.dtype), z], axis=1)
    position = self.param(
        "position_embedding", nn.initializers.normal(0.02), (1, z.shape[1], self.hidden_size)
    )
    z = nn.Dropout(self.dropout_rate, deterministic=not train)(z + position.astype(z.dtype))
    features, attentions = [], []
    for index in range(self.num_layers):
      z, probabilities = EncoderBlock(
          self.num_heads,
          self.mlp_dim,
          self.dropout_rate,
          self.dtype,
          self.attention_implementation,
          name=f"block_{index}",
      )(z, train=train, return_probabilities="attentions" in wanted)
      features.append(z)
      attentions.append(probabilities)
    z = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name="final_norm")(z)
    if self.pooling == "cls":
      embedding = z[:, 0]
    elif self.pooling == "gap":
      embedding = z[:, 1:].mean(axis=1)
    else:
      raise ValueError(f"pooling must be 'cls' or 'gap', got {self.pooling!r}")
    logits = None
    if self.num_classes is not None:
      logits = nn.Dense(
          self.num_classes, dtype=self.dtype, kernel_init=nn.initializers.zeros, name="classifier"
      )(embedding).astype(jnp.float32)
    return select(
        {"logits": logits, "embedding": embedding, "features": features, "attentions": attentions},
        wanted,
    )


VITS = {
    "vit_tiny": {"hidden_size": 192, "num_layers": 12, "num_heads": 3, "mlp_dim": 768},
    "vit_small": {"hidden_size": 384, "num_layers": 12, "num_heads": 6, "mlp_dim": 1536},
    # Shallow students for CPU runs and tests.
    "vit_micro": {"hidden_size": 64, "num_layers": 4, "num_heads": 4, "mlp_dim": 128},
}
