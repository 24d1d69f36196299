"""Self-supervised audio embeddings from two crops of one clip: SEA's `cpu` teacher, and the
paper's baseline students trained "the teacher's way" (PAPERS.md §1, Table 2's AVC-trained rows).

L3 (the SEA teacher) learns without labels: audio-visual correspondence, "do this second of audio
and this video frame come from the same clip?". Without video, the nearest audio-only task is
audio-clip correspondence: two one-second crops of one clip are a positive pair, crops of the
other clips in the batch are negatives. Its in-batch form is NT-Xent (SimCLR; InfoNCE with the
batch as negatives): with h = the embedding, z = g(h) / ‖g(h)‖ through a small projection head g
(2 layers, ReLU; as SimCLR, and standing in for L3's fusion layers after the audio embedding),
2B views and p(i) the other crop of i's clip,

    L_i = −log( exp(z_i·z_p(i)/τ) / Σ_{a≠i} exp(z_i·z_a/τ) ),

which is `kd_jax.losses.supervised_contrastive` with the clip as the "label" (exactly one positive
per anchor); `nt_xent` adds the correspondence accuracy and a mask for padded views. The views come from the batch transform `kd_jax.data.sea_general:two_crops`
(rows [first crops; second crops], "pair" = the clip). Downstream tasks read h, not z.

`eval_metrics` (e.g. on G's validation split, whose two-second clips are not cropped by the
transform): the first and the last second of each clip, embedded in inference mode, give
"crop_nt_xent" and "crop_match" (1 when the nearest other view is the clip's other crop) among
the eval batch's clips (padding left out): chance is 1 / (2·batch − 1).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from kd_jax.losses import checks
from kd_jax.losses.relational import l2_normalize
from kd_jax.methods import base


def projection(params, embedding):
  """g(h) = W₂ ReLU(W₁ h + b₁) + b₂ (float32)."""
  hidden = jax.nn.relu(embedding.astype(jnp.float32) @ params["w1"] + params["b1"])
  return hidden @ params["w2"] + params["b2"]


def nt_xent(embeddings, pair, *, temperature: float, valid=None):
  """(loss [views], match [views]): NT-Xent per view (the equation of the module docstring), and
  1.0 where the view's most similar other view is its pair (the correspondence accuracy).

  `valid` [views] (default: all) drops views from the negatives of every other view — the
  padding of a last eval batch; their own loss and match are 0. A view whose pair is not in the
  batch gets loss 0.
  """
  checks.require_rank("embeddings", embeddings, 2)
  checks.require_dim("embeddings", embeddings, 0, "pair", pair, 0, "Views")
  views = embeddings.shape[0]
  valid = jnp.ones(views, bool) if valid is None else jnp.asarray(valid, bool)
  z = l2_normalize(checks.as_float32(embeddings))
  others = ~jnp.eye(views, dtype=bool) & valid[None, :]
  logits = jnp.where(others, z @ z.T / temperature, -jnp.inf)
  positive = (pair[:, None] == pair[None, :]) & others
  log_prob = logits - jax.nn.logsumexp(logits, axis=-1, keepdims=True)
  count = jnp.sum(positive, axis=-1)
  loss = -jnp.sum(jnp.where(positive, log_prob, 0.0), axis=-1) / jnp.maximum(count, 1)
  match = pair[jnp.argmax(logits, axis=-1)] == pair
  keep = valid & (count > 0)
  return jnp.where(keep, loss, 0.0), jnp.where(keep & match, 1.0, 0.0)


@dataclasses.dataclass(frozen=True)
class CropContrastive(base.Method):
  """Two crops of a clip as a positive pair (see the module docstring).

  Attributes:
    temperature: τ (SimCLR's 0.1 for small batches).
    projection_dim: width of z; projection_hidden: of g's hidden layer (0: the embedding's).
    crop_samples: the crop length of `eval_metrics` (one second at 16 kHz).
    pair_key: the batch entry naming each view's clip.
  """

  outputs: ClassVar[frozenset] = frozenset({"embedding"})
  batch_dependent: ClassVar[bool] = True
  temperature: float = 0.1
  projection_dim: int = 128
  projection_hidden: int = 0
  crop_samples: int = 16000
  pair_key: str = "pair"

  def __post_init__(self):
    if self.temperature <= 0:
      raise ValueError(f"crop_contrastive: temperature must be > 0, got {self.temperature}.")
    if self.projection_dim < 1 or self.projection_hidden < 0 or self.crop_samples < 1:
      raise ValueError(
          "crop_contrastive: projection_dim and crop_samples must be >= 1 and "
          "projection_hidden >= 0."
      )

  def init(self, rng, io):
    width = io.student["embedding"].shape[-1]
    hidden = self.projection_hidden or width
    k1, k2 = jax.random.split(rng)
    glorot = jax.nn.initializers.glorot_uniform()
    params = {
        "w1": glorot(k1, (width, hidden), jnp.float32),
        "b1": jnp.zeros((hidden,), jnp.float32),
        "w2": glorot(k2, (hidden, self.projection_dim), jnp.float32),
        "b2": jnp.zeros((self.projection_dim,), jnp.float32),
    }
    return base.Variables(params=params)

  def loss(self, params, state, io):
    del state
    if self.pair_key not in io.batch:
      raise ValueError(
          f"crop_contrastive: the batch has no {self.pair_key!r}; add the batch transform "
          "'kd_jax.data.sea_general:two_crops' (config.batch_transforms)."
      )
    z = projection(params, io.student["embedding"])
    loss, match = nt_xent(z, io.batch[self.pair_key], temperature=self.temperature)
    mean = jnp.mean(loss)
    return mean, base.Aux(metrics={"crop_nt_xent": mean, "crop_match": jnp.mean(match)})

  def eval_metrics(self, params, state, io):
    del state
    clips = io.inputs
    if clips.ndim != 2 or clips.shape[1] < self.crop_samples:
      raise ValueError(
          f"crop_contrastive: eval needs waveforms [batch, >= {self.crop_samples}], got "
          f"{tuple(clips.shape)}."
      )
    views = jnp.concatenate([clips[:, : self.crop_samples], clips[:, -self.crop_samples :]])
    h = io.apply_student(io.student_variables, views)["embedding"]
    rows = jnp.arange(clips.shape[0])
    valid = io.batch.get("mask", jnp.ones(clips.shape[0], bool))
    loss, match = nt_xent(
        projection(params, h),
        jnp.concatenate([rows, rows]),
        temperature=self.temperature,
        valid=jnp.concatenate([valid, valid]),
    )
    size = clips.shape[0]
    return {
        "crop_nt_xent": (loss[:size] + loss[size:]) / 2,
        "crop_match": (match[:size] + match[size:]) / 2,
    }
