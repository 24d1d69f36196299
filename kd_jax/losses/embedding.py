"""Embedding and feature regression losses.

- `embedding_mse`: SEA (PAPERS.md §1, Eq. 1 with the code's per-dimension mean) and the "Reg"
  baseline of CompRess (§5).
- `fitnets_hint`: FitNets hint regression through an explicit, caller-owned adapter.
- `cosine_distance`: 1 − cos, a scale-free alternative.
- `attention_transfer`: AT (Zagoruyko & Komodakis, ICLR 2017), normalised spatial attention maps
  of feature maps, a DiSK-table baseline.

Per-example outputs [batch], float32 inside.
"""

from __future__ import annotations

import jax.numpy as jnp

from kd_jax.losses import checks
from kd_jax.losses.relational import l2_normalize


def embedding_mse(student_emb, target_emb):
  """SEA's embedding regression, per example: (1/d) Σ_k (f_S(x)_k − φ(f_T(x))_k)².

  `target_emb` is the teacher embedding after the dimensionality reduction φ (PCA fitted on a
  sample of the target domain; identity when d = n); fitting φ is the SEA method's job.

  Args:
    student_emb: [batch, d]; target_emb: [batch, d].
  Returns:
    [batch] float32.
  """
  checks.require_rank("student_emb", student_emb, 2)
  checks.require_same_shape("student_emb", student_emb, "target_emb", target_emb)
  student_emb, target_emb = checks.as_float32(student_emb, target_emb)
  return jnp.mean(jnp.square(student_emb - target_emb), axis=-1)


def apply_adapter(features, adapter):
  """r(u) = u W + b on the channel (last) axis: a linear layer, or a 1×1 convolution on maps."""
  if not isinstance(adapter, dict) or set(adapter) != {"kernel", "bias"}:
    raise ValueError("adapter must be a dict with keys 'kernel' [c_s, c_t] and 'bias' [c_t].")
  kernel, bias = checks.as_float32(adapter["kernel"], adapter["bias"])
  checks.require_rank("adapter['kernel']", kernel, 2)
  checks.require_dim(
      "student_features", features, -1, "adapter['kernel']", kernel, 0, "Student channels"
  )
  checks.require_dim(
      "adapter['kernel']", kernel, 1, "adapter['bias']", bias, 0, "Adapter output channels"
  )
  return jnp.einsum("...c,cd->...d", checks.as_float32(features), kernel) + bias


def fitnets_hint(student_features, teacher_features, adapter):
  """FitNets hint loss, per example: mean over positions and channels of (r(u_s) − u_t)².

  Romero et al. write ½‖u_t − r(u_s)‖²; the per-element mean used here (as in the common
  PyTorch baselines) only rescales it. The adapter r is a linear map on the channel axis with
  parameters owned and trained by the FitNets method.

  Args:
    student_features: [batch, ..., c_s] (e.g. [batch, h, w, c_s] or [batch, d_s]).
    teacher_features: [batch, ..., c_t] with the same spatial shape.
    adapter: {'kernel': [c_s, c_t], 'bias': [c_t]}.
  Returns:
    [batch] float32.
  """
  if jnp.shape(student_features)[:-1] != jnp.shape(teacher_features)[:-1]:
    raise ValueError(
        f"student_features has shape {tuple(jnp.shape(student_features))} and teacher_features "
        f"has shape {tuple(jnp.shape(teacher_features))}: all axes but the channels must match "
        "(resize or pool the student's map first)."
    )
  regressed = apply_adapter(student_features, adapter)
  diff = jnp.square(regressed - checks.as_float32(teacher_features))
  return jnp.mean(jnp.reshape(diff, (diff.shape[0], -1)), axis=-1)


def cosine_distance(student_emb, teacher_emb):
  """1 − cos(s, t) per example, in [0, 2]; both embeddings must have the same dimension."""
  checks.require_rank("student_emb", student_emb, 2)
  checks.require_same_shape("student_emb", student_emb, "teacher_emb", teacher_emb)
  student_emb, teacher_emb = checks.as_float32(student_emb, teacher_emb)
  return 1.0 - jnp.sum(l2_normalize(student_emb) * l2_normalize(teacher_emb), axis=-1)


def spatial_attention(features, *, p: float = 2.0):
  """q = vec(mean_c |A_c|^p) / ‖vec(mean_c |A_c|^p)‖₂: AT's attention map of [batch, h, w, c]."""
  checks.require_rank("features", features, 4)
  features = checks.as_float32(features)
  maps = jnp.mean(jnp.abs(features) ** p, axis=-1).reshape(features.shape[0], -1)
  return l2_normalize(maps)


def attention_transfer(student_features, teacher_features, *, p: float = 2.0):
  """Attention transfer, per example: mean_j (q_s,j − q_t,j)² over the h·w positions j.

  q = vec(Σ_c |A_c|^p) / ‖·‖₂ (Zagoruyko & Komodakis, 2017, Eq. 2 with F = Σ|A_c|^p; the mean
  over channels is the same map up to the normalisation). The paper's loss is
  (β/2)·‖q_s − q_t‖_2 summed over layer pairs; the official code and the common baselines use the
  squared difference averaged over positions, with β ≈ 1000 — the form here, β left to the
  method. Channels may differ; the spatial sizes must match.

  Args:
    student_features: [batch, h, w, c_s]; teacher_features: [batch, h, w, c_t].
  Returns:
    [batch] float32.
  """
  checks.require_rank("student_features", student_features, 4)
  checks.require_rank("teacher_features", teacher_features, 4)
  if jnp.shape(student_features)[:3] != jnp.shape(teacher_features)[:3]:
    raise ValueError(
        f"student_features has shape {tuple(jnp.shape(student_features))} and teacher_features "
        f"has shape {tuple(jnp.shape(teacher_features))}: attention transfer needs the same "
        "batch and spatial size (pair stages of equal resolution)."
    )
  diff = spatial_attention(student_features, p=p) - spatial_attention(teacher_features, p=p)
  return jnp.mean(jnp.square(diff), axis=-1)
