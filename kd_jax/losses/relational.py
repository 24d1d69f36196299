"""Relational losses: the student matches relations among examples, not the examples themselves.

- `similarity_kl`: KL between teacher and student similarity distributions over anchors
  (CompRess, PAPERS.md §5; with teacher anchors on both sides, ReAugKD's relational term, §2).
- `rkd_distance`, `rkd_angle`: relational KD (Park et al., 2019), PAPERS.md "Baselines".
- `correlation_congruence`: CC (Peng et al., 2019), PAPERS.md "Baselines".
- `pkt`: probabilistic knowledge transfer (Passalis & Tefas, 2018), cosine-kernel neighbour
  probabilities; `similarity_preserving`: SP (Tung & Mori, 2019), batch Gram matrices of feature
  maps. Both are baselines of the method zoo table.

All return one value per example `[batch]`; the pairwise matrices are built with `vmap` over the
anchor example so that the per-example structure stays explicit.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from kd_jax.losses import checks

_EPS = 1e-12


def l2_normalize(x, axis: int = -1):
  """x / max(‖x‖₂, ε): the normalisation used before every cosine similarity here.

  The clamp is applied before the square root: √ has an infinite derivative at 0, which would
  turn the zero vectors of RKD's degenerate pairs (x_i − x_i) into NaN gradients.
  """
  squared_norm = jnp.sum(jnp.square(x), axis=axis, keepdims=True)
  return x * jax.lax.rsqrt(jnp.maximum(squared_norm, _EPS * _EPS))


def _anchor_similarities(emb, anchors, temperature):
  """Log-softmax over anchors of cos(emb_i, a_j)/τ. Anchors [k, d] (shared) or [b, k, d]."""
  emb, anchors = l2_normalize(emb), l2_normalize(anchors)
  if anchors.ndim == 2:
    logits = emb @ anchors.T
  else:
    logits = jnp.einsum("bd,bkd->bk", emb, anchors)
  return jax.nn.log_softmax(logits / temperature, axis=-1)


def similarity_kl(
    student_emb,
    student_anchors,
    teacher_emb,
    teacher_anchors,
    *,
    temperature: float,
    student_temperature: float | None = None,
):
  """KL between the teacher's and the student's similarity distributions over anchors.

  p^T_i(j) = softmax_j(t_i·a^T_j / τ),  p^S_i(j) = softmax_j(s_i·a^S_j / τ_s),
  L_i = KL(p^T_i ‖ p^S_i) = Σ_j p^T_i(j) (log p^T_i(j) − log p^S_i(j)),
  with every embedding and anchor L2-normalised inside (so the dot products are cosines).

  CompRess (PAPERS.md §5): anchors are memory-bank entries, a^T from the teacher's bank and a^S
  from the student's (2q) or the teacher's through a linear map (1q); τ_s = τ = 0.04.
  ReAugKD (§2, reconstruction): a^T = a^S = teacher embeddings of the batch or of the retrieved
  neighbours, τ = τ_t, τ_s the student temperature.

  Args:
    student_emb: [batch, d_s].
    student_anchors: [k, d_s] shared by the batch, or [batch, k, d_s] per example.
    teacher_emb: [batch, d_t].
    teacher_anchors: [k, d_t] or [batch, k, d_t]; the same number k of anchors as the student's.
    temperature: τ for the teacher side (and the student side unless given).
    student_temperature: τ_s; defaults to τ.
  Returns:
    [batch] float32, ≥ 0.
  """
  checks.require_rank("student_emb", student_emb, 2)
  checks.require_rank("teacher_emb", teacher_emb, 2)
  checks.require_rank("student_anchors", student_anchors, (2, 3))
  checks.require_rank("teacher_anchors", teacher_anchors, (2, 3))
  checks.require_dim("student_emb", student_emb, 0, "teacher_emb", teacher_emb, 0, "Batch sizes")
  checks.require_dim(
      "student_emb",
      student_emb,
      -1,
      "student_anchors",
      student_anchors,
      -1,
      "Student embedding dimensions",
  )
  checks.require_dim(
      "teacher_emb",
      teacher_emb,
      -1,
      "teacher_anchors",
      teacher_anchors,
      -1,
      "Teacher embedding dimensions",
  )
  checks.require_dim(
      "student_anchors",
      student_anchors,
      -2,
      "teacher_anchors",
      teacher_anchors,
      -2,
      "Numbers of anchors",
  )
  for name, anchors in (("student_anchors", student_anchors), ("teacher_anchors", teacher_anchors)):
    if jnp.ndim(anchors) == 3:
      checks.require_dim(name, anchors, 0, "student_emb", student_emb, 0, "Batch sizes")
  tau_s = temperature if student_temperature is None else student_temperature
  for name, value in (("temperature", temperature), ("student_temperature", tau_s)):
    checks.require_positive(name, value)
  student_emb, student_anchors, teacher_emb, teacher_anchors = checks.as_float32(
      student_emb, student_anchors, teacher_emb, teacher_anchors
  )
  log_p_t = _anchor_similarities(teacher_emb, teacher_anchors, temperature)
  log_p_s = _anchor_similarities(student_emb, student_anchors, tau_s)
  kl = jnp.sum(jnp.exp(log_p_t) * (log_p_t - log_p_s), axis=-1)
  return checks.nan_unless_positive(checks.nan_unless_positive(kl, temperature), tau_s)


def _smooth_l1(x, y):
  """Huber loss with β = 1 (PyTorch's smooth_l1_loss): 0.5d² if |d| < 1 else |d| − 0.5."""
  d = jnp.abs(x - y)
  return jnp.where(d < 1.0, 0.5 * d * d, d - 0.5)


def _pairwise_distances(emb):
  """ψ_D(i, j) = ‖e_i − e_j‖₂ with a zero diagonal; sqrt clamped away from 0 for finite grads."""

  def row(e_i):
    return jnp.sum(jnp.square(emb - e_i), axis=-1)

  squared = jax.vmap(row)(emb)
  dist = jnp.sqrt(jnp.maximum(squared, _EPS))
  return dist * (1.0 - jnp.eye(emb.shape[0], dtype=dist.dtype))


def _mean_normalized_distances(emb):
  """Distances divided by their mean over off-diagonal pairs μ = (1/|P|) Σ_{i≠j} ψ(i, j)."""
  dist = _pairwise_distances(emb)
  n = emb.shape[0]
  mean = jnp.sum(dist) / max(n * (n - 1), 1)
  return dist / jnp.maximum(mean, _EPS)


def _check_pair(student_emb, teacher_emb):
  checks.require_rank("student_emb", student_emb, 2)
  checks.require_rank("teacher_emb", teacher_emb, 2)
  checks.require_dim("student_emb", student_emb, 0, "teacher_emb", teacher_emb, 0, "Batch sizes")
  if jnp.shape(student_emb)[0] < 2:
    raise ValueError(
        f"relational losses need at least 2 examples, got shape {tuple(jnp.shape(student_emb))}."
    )


def rkd_distance(student_emb, teacher_emb):
  """RKD distance-wise loss, per example (Park et al., 2019).

  ψ_D(i, j) = ‖x_i − x_j‖ / μ with μ the mean distance over pairs i ≠ j, and
  L_i = (1/n) Σ_j smoothL1(ψ_D^S(i, j), ψ_D^T(i, j)); mean_i L_i is the paper's loss (averaged over
  all n² entries, diagonal included). Embedding dimensions may differ. Paper weight: 25.

  Args:
    student_emb: [batch, d_s]; teacher_emb: [batch, d_t].
  Returns:
    [batch] float32.
  """
  _check_pair(student_emb, teacher_emb)
  student_emb, teacher_emb = checks.as_float32(student_emb, teacher_emb)
  return jnp.mean(
      _smooth_l1(_mean_normalized_distances(student_emb), _mean_normalized_distances(teacher_emb)),
      axis=-1,
  )


def _angles_at(emb):
  """[n, n, n] cosines ψ_A(i, j, k) of the angle at apex x_i between x_j and x_k."""

  def at_apex(x_i):
    directions = l2_normalize(emb - x_i)
    return directions @ directions.T

  return jax.vmap(at_apex)(emb)


def rkd_angle(student_emb, teacher_emb):
  """RKD angle-wise loss, per apex example (Park et al., 2019).

  ψ_A(i, j, k) = ⟨(x_j − x_i)/‖x_j − x_i‖, (x_k − x_i)/‖x_k − x_i‖⟩ (the cosine of the angle at
  x_i), L_i = (1/n²) Σ_{j,k} smoothL1(ψ_A^S(i, j, k), ψ_A^T(i, j, k)); mean_i L_i is the paper's
  loss. Degenerate directions (j = i) are zero vectors on both sides. Paper weight: 50.

  Returns:
    [batch] float32.
  """
  _check_pair(student_emb, teacher_emb)
  student_emb, teacher_emb = checks.as_float32(student_emb, teacher_emb)
  return jnp.mean(_smooth_l1(_angles_at(student_emb), _angles_at(teacher_emb)), axis=(-2, -1))


def _correlation_matrix(emb, kernel, gamma, order):
  emb = l2_normalize(emb)
  if kernel == "bilinear":
    return emb @ emb.T
  if kernel == "gaussian":

    def row(e_i):
      return jnp.exp(-gamma * jnp.sum(jnp.square(emb - e_i), axis=-1))

    return jax.vmap(row)(emb)
  # Taylor series of the Gaussian RBF for unit vectors: ‖a − b‖² = 2 − 2a·b, so
  # exp(−γ‖a − b‖²) = e^{−2γ} Σ_p (2γ)^p (a·b)^p / p!, truncated at p = order.
  dots = emb @ emb.T
  return sum(
      math.exp(-2 * gamma) * (2 * gamma) ** p / math.factorial(p) * dots**p
      for p in range(order + 1)
  )


def correlation_congruence(
    student_emb, teacher_emb, *, kernel: str = "gaussian_taylor", gamma: float = 0.4, order: int = 2
):
  """Correlation congruence (CC, Peng et al., 2019), per example.

  With L2-normalised embeddings and a kernel k, C_ij = k(f_i, f_j) on each side and
  L_CC = (1/n²) ‖C^T − C^S‖²_F; L_i = (1/n) Σ_j (C^T_ij − C^S_ij)², so mean_i L_i = L_CC.
  Kernels: "gaussian_taylor" (the paper's P-th order Taylor expansion of exp(−γ‖a − b‖²),
  defaults γ = 0.4, P = 2), "gaussian" (exact RBF), "bilinear" (a·b).

  Returns:
    [batch] float32.
  """
  _check_pair(student_emb, teacher_emb)
  if kernel not in ("gaussian_taylor", "gaussian", "bilinear"):
    raise ValueError(f"kernel must be 'gaussian_taylor', 'gaussian' or 'bilinear', got {kernel!r}.")
  if order < 0:
    raise ValueError(f"order must be >= 0, got {order}.")
  student_emb, teacher_emb = checks.as_float32(student_emb, teacher_emb)
  c_s = _correlation_matrix(student_emb, kernel, gamma, order)
  c_t = _correlation_matrix(teacher_emb, kernel, gamma, order)
  return jnp.mean(jnp.square(c_t - c_s), axis=-1)


def _cosine_kernel_probabilities(emb):
  """PKT's conditional probabilities: K_ij = (cos(x_i, x_j) + 1)/2, each row divided by its sum."""
  unit = l2_normalize(emb)
  kernel = (unit @ unit.T + 1.0) / 2.0
  return kernel / jnp.sum(kernel, axis=-1, keepdims=True)


def pkt(student_emb, teacher_emb, *, eps: float = 1e-7):
  """Probabilistic knowledge transfer (Passalis & Tefas, ECCV 2018), per example.

  With the cosine kernel K(a, b) = (cos(a, b) + 1)/2 ∈ [0, 1], the probability that example i
  picks j as a neighbour is p_ij = K(x_i, x_j) / Σ_k K(x_i, x_k) on each side, and
  L_i = (1/n) Σ_j p^T_ij log((p^T_ij + ε)/(p^S_ij + ε)); mean_i L_i is the loss of the paper's
  code (the KL summed over pairs, averaged over the n² entries; ε = 1e-7 keeps it finite).
  Embedding dimensions may differ. RepDistiller's CIFAR-100 weight: 30 000.

  Args:
    student_emb: [batch, d_s]; teacher_emb: [batch, d_t].
  Returns:
    [batch] float32.
  """
  _check_pair(student_emb, teacher_emb)
  student_emb, teacher_emb = checks.as_float32(student_emb, teacher_emb)
  p_s = _cosine_kernel_probabilities(student_emb)
  p_t = _cosine_kernel_probabilities(teacher_emb)
  return jnp.mean(p_t * jnp.log((p_t + eps) / (p_s + eps)), axis=-1)


def _normalized_gram(features):
  """G = Q Qᵀ of the flattened maps Q [n, h·w·c], each row L2-normalised."""
  flat = jnp.reshape(features, (features.shape[0], -1))
  return l2_normalize(flat @ flat.T)


def similarity_preserving(student_features, teacher_features):
  """Similarity-preserving KD (Tung & Mori, ICCV 2019, Eq. 2–4), per example.

  Q = the batch's activation maps flattened to [n, h·w·c]; G = Q Qᵀ with each row L2-normalised;
  L_i = (1/n) Σ_j (G^T_ij − G^S_ij)², so mean_i L_i = (1/n²)‖G^T − G^S‖²_F (the paper's loss for
  one layer pair). Shapes may differ but for the batch axis. RepDistiller's CIFAR-100 weight
  (last stage's map): 3000.

  Args:
    student_features: [batch, ...]; teacher_features: [batch, ...].
  Returns:
    [batch] float32.
  """
  for name, x in (("student_features", student_features), ("teacher_features", teacher_features)):
    if jnp.ndim(x) < 2:
      raise ValueError(f"{name} must be [batch, ...], got shape {tuple(jnp.shape(x))}.")
  checks.require_dim(
      "student_features",
      student_features,
      0,
      "teacher_features",
      teacher_features,
      0,
      "Batch sizes",
  )
  student_features, teacher_features = checks.as_float32(student_features, teacher_features)
  diff = _normalized_gram(teacher_features) - _normalized_gram(student_features)
  return jnp.mean(jnp.square(diff), axis=-1)
