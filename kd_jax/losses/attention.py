"""Attention-map distillation between transformers, including different numbers of heads.

- `amad`: AMAD (Zhao et al., AAAI-24, PAPERS.md §3) soft-aligns every teacher head to a mixture of
  student heads, so H_s ≠ H_t works. Variants "mse" (Eq. 4–6), "kl" (Eq. 9), "token_kl"
  (Eq. 12), each optionally on projected student maps (Eq. 11).
- `one_to_one_attention`: head i ↔ head i (TinyBERT / MiniLM style); needs H_s = H_t.
- `head_pooled_attention`: the mean map over heads on each side, the baseline other libraries
  use for mismatched heads; `head_summed_attention`: the summed maps (TextBrewer);
  `head_group_pooled_attention`: the teacher's heads averaged in groups down to H_s (Tunix).

Maps are attention probabilities: teacher [batch, H_t, q, k], student [batch, H_s, q, k], each
row (fixed head and query) a distribution over keys. Per-example outputs [batch]; the cost of one
example is written for one example and `vmap`ped over the batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from kd_jax.losses import checks
from kd_jax.losses.relational import l2_normalize

_EPS = 1e-12
AMAD_VARIANTS = ("mse", "kl", "token_kl")


def _kl_rows(p, q):
  """Σ_k p log(p/q) over the last axis, with 0·log 0 = 0 and q clamped to ε (finite grads)."""
  log_p = jnp.log(jnp.where(p > 0, p, 1.0))
  return jnp.sum(p * (log_p - jnp.log(jnp.maximum(q, _EPS))), axis=-1)


def _alignment(teacher_rows, student_rows):
  """Eq. 2: a_ij = softmax_j cos(t_i, s_j) — per teacher head, a distribution over student heads."""
  cosine = l2_normalize(teacher_rows) @ l2_normalize(student_rows).T
  return jax.nn.softmax(cosine, axis=-1)


def project_student_maps(student_attn, projection):
  """Eq. 11: S̃ = ReLU(S Wᵀ + b) on the key axis, rows renormalised to distributions.

  The paper feeds S̃ to the KL of Eq. 9; a KL needs distributions, so each row of S̃ is divided by
  its sum (reconstruction: the appendix code was not available). W: [k_t, k_s] lets a student
  with another number of keys (e.g. fewer patches) be compared with the teacher.
  """
  if not isinstance(projection, dict) or set(projection) != {"kernel", "bias"}:
    raise ValueError("projection must be a dict with keys 'kernel' [k_t, k_s] and 'bias' [k_t].")
  kernel, bias = checks.as_float32(projection["kernel"], projection["bias"])
  checks.require_rank("projection['kernel']", kernel, 2)
  checks.require_dim(
      "projection['kernel']", kernel, 1, "student_attn", student_attn, -1, "Student key lengths"
  )
  checks.require_dim(
      "projection['kernel']", kernel, 0, "projection['bias']", bias, 0, "Projected key lengths"
  )
  projected = jax.nn.relu(jnp.einsum("...k,tk->...t", student_attn, kernel) + bias)
  return projected / jnp.maximum(jnp.sum(projected, axis=-1, keepdims=True), _EPS)


def head_alignment(teacher_attn, student_attn, query_mask=None):
  """Eq. 2 per example: a [batch, H_t, H_s], a_ij = softmax_j cos(T_i, S_j) of the flattened
  maps, with padded query rows zeroed first (as the AMAD losses see them). Not a loss: which
  teacher heads a student's heads stand in for, e.g. for a plot of a trained pair."""
  _check_maps(teacher_attn, student_attn)
  teacher_attn, student_attn = checks.as_float32(teacher_attn, student_attn)
  mask = _query_mask(query_mask, teacher_attn)[:, None, :, None]
  flat = lambda maps: jnp.reshape(maps * mask, maps.shape[:2] + (-1,))
  return jax.vmap(_alignment)(flat(teacher_attn), flat(student_attn))


def _amad_mse_one(t, s):
  """Eq. 4–6 for one example: Σ_i ‖t̂_i − Σ_j a_ij ŝ_j‖², flattened maps L2-normalised."""
  t_hat = l2_normalize(jnp.reshape(t, (t.shape[0], -1)))
  s_hat = l2_normalize(jnp.reshape(s, (s.shape[0], -1)))
  mixture = _alignment(t_hat, s_hat) @ s_hat
  return jnp.sum(jnp.square(t_hat - mixture))


def _amad_kl_one(t, s, query_mask):
  """Eq. 9 for one example: Σ_i KL(T_i ‖ Σ_j a_ij S_j), summed over every query row of T_i.

  a_ij from the cosine of the flattened maps (Eq. 2). A convex combination of student maps keeps
  every row a distribution, so the KL is well defined row by row.
  """
  h_t, h_s = t.shape[0], s.shape[0]
  weights = _alignment(jnp.reshape(t, (h_t, -1)), jnp.reshape(s, (h_s, -1)))
  mixture = jnp.einsum("ij,jqk->iqk", weights, s)
  return jnp.sum(_kl_rows(t, mixture) * query_mask[None, :])


def _amad_token_kl_one(t, s, query_mask):
  """Eq. 12 for one example: Σ_l KL(T_l ‖ softmax(cos(T_l, S_l)) S_l), T_l = row l of all heads."""

  def at_query(t_l, s_l):  # [H_t, k], [H_s, k]
    return jnp.sum(_kl_rows(t_l, _alignment(t_l, s_l) @ s_l))

  per_query = jax.vmap(at_query, in_axes=(1, 1))(t, s)
  return jnp.sum(per_query * query_mask)


def _check_maps(teacher_attn, student_attn):
  checks.require_rank("teacher_attn", teacher_attn, 4)
  checks.require_rank("student_attn", student_attn, 4)
  checks.require_dim(
      "teacher_attn", teacher_attn, 0, "student_attn", student_attn, 0, "Batch sizes"
  )
  checks.require_dim(
      "teacher_attn", teacher_attn, 2, "student_attn", student_attn, 2, "Query lengths"
  )


def _query_mask(query_mask, teacher_attn):
  if query_mask is None:
    return jnp.ones(teacher_attn.shape[::2], jnp.float32)  # [batch, q]
  mask = jnp.asarray(query_mask, jnp.float32)
  if mask.shape != (teacher_attn.shape[0], teacher_attn.shape[2]):
    raise ValueError(
        f"query_mask has shape {mask.shape} but the maps need "
        f"[batch, q] = {(teacher_attn.shape[0], teacher_attn.shape[2])}."
    )
  return mask


def amad(teacher_attn, student_attn, *, variant: str = "mse", projection=None, query_mask=None):
  """AMAD: multi-head alignment distillation of attention maps (PAPERS.md §3), per example.

  Flatten each head's map: teacher rows t_i ∈ Rⁿ (i ≤ H_t), student rows s_j ∈ Rⁿ (j ≤ H_s).
  Soft alignment (Eq. 2): a_ij = exp(cos(t_i, s_j)) / Σ_m exp(cos(t_i, s_m)).
  - "mse" (Eq. 4–6): L = Σ_i ‖ t_i/‖t_i‖ − Σ_j a_ij s_j/‖s_j‖ ‖² = ‖T − softmax_row(TSᵀ)S‖²_F.
  - "kl" (Eq. 9): L = Σ_i KL(T_i ‖ Σ_j a_ij S_j), KL summed over the map's query rows.
  - "token_kl" (Eq. 12): L = Σ_l KL(T_l ‖ softmax(T_l S_lᵀ) S_l), T_l ∈ R^{H_t×k} stacking row l
    of every head (alignment per query position, cosine weights as in Eq. 2).
  - projection (Eq. 11): student maps replaced by S̃ = ReLU(S Wᵀ + b) (rows renormalised) before
    the alignment; pass {'kernel': W [k_t, k_s], 'bias': b [k_t]} (trainable by the caller).

  Properties: invariant to permuting the student's heads; with one head on each side "mse" is
  ‖t/‖t‖ − s/‖s‖‖². It is *not* zero for identical head sets: the softmax spreads each teacher
  head's weight over all student heads.

  Args:
    teacher_attn: [batch, H_t, q, k_t]; student_attn: [batch, H_s, q, k_s] (k_s = k_t unless a
      projection maps k_s to k_t).
    variant: "mse", "kl" or "token_kl".
    projection: optional Eq. 11 parameters.
    query_mask: optional [batch, q] (1 for real tokens) for the KL variants: padded query rows
      are left out of the sums.
  Returns:
    [batch] float32.
  """
  if variant not in AMAD_VARIANTS:
    raise ValueError(f"variant must be one of {AMAD_VARIANTS}, got {variant!r}.")
  _check_maps(teacher_attn, student_attn)
  teacher_attn, student_attn = checks.as_float32(teacher_attn, student_attn)
  if projection is not None:
    student_attn = project_student_maps(student_attn, projection)
  checks.require_dim(
      "teacher_attn",
      teacher_attn,
      3,
      "student_attn",
      student_attn,
      3,
      "Key lengths (pass a projection to map the student's keys)",
  )
  if variant == "mse":
    if query_mask is not None:
      raise ValueError("query_mask applies to the 'kl' and 'token_kl' variants only.")
    return jax.vmap(_amad_mse_one)(teacher_attn, student_attn)
  mask = _query_mask(query_mask, teacher_attn)
  one = _amad_kl_one if variant == "kl" else _amad_token_kl_one
  return jax.vmap(one)(teacher_attn, student_attn, mask)


def _compare_maps(teacher_attn, student_attn, kind):
  """ "mse": mean over heads, queries and keys of (t − s)²; "kl": KL over keys, mean over rows."""
  if kind == "mse":
    return jnp.mean(jnp.square(teacher_attn - student_attn), axis=(-3, -2, -1))
  if kind == "kl":
    return jnp.mean(_kl_rows(teacher_attn, student_attn), axis=(-2, -1))
  raise ValueError(f"kind must be 'mse' or 'kl', got {kind!r}.")


def one_to_one_attention(teacher_attn, student_attn, *, kind: str = "mse"):
  """Head i of the teacher distils into head i of the student, per example.

  "mse" (TinyBERT): (1/(H q k)) Σ_{h,q,k} (A^T − A^S)²; "kl" (MiniLM): (1/(H q)) Σ_{h,q}
  KL(A^T_{h,q} ‖ A^S_{h,q}). Needs H_s = H_t: use `amad` or `head_pooled_attention` otherwise.

  Returns:
    [batch] float32.
  """
  _check_maps(teacher_attn, student_attn)
  h_t, h_s = jnp.shape(teacher_attn)[1], jnp.shape(student_attn)[1]
  if h_t != h_s:
    raise ValueError(
        f"one_to_one_attention needs equal head counts, but teacher_attn has {h_t} heads (shape "
        f"{tuple(jnp.shape(teacher_attn))}) and student_attn has {h_s} (shape "
        f"{tuple(jnp.shape(student_attn))}); use amad() or head_pooled_attention()."
    )
  checks.require_same_shape("teacher_attn", teacher_attn, "student_attn", student_attn)
  return _compare_maps(*checks.as_float32(teacher_attn, student_attn), kind)


def head_pooled_attention(teacher_attn, student_attn, *, kind: str = "mse"):
  """Baseline for mismatched heads: compare the head-averaged maps (1/H) Σ_h A_h, per example.

  Returns:
    [batch] float32.
  """
  _check_maps(teacher_attn, student_attn)
  checks.require_dim(
      "teacher_attn", teacher_attn, 3, "student_attn", student_attn, 3, "Key lengths"
  )
  teacher_attn, student_attn = checks.as_float32(teacher_attn, student_attn)
  pooled_t = jnp.mean(teacher_attn, axis=1, keepdims=True)
  pooled_s = jnp.mean(student_attn, axis=1, keepdims=True)
  return _compare_maps(pooled_t, pooled_s, kind)


def head_summed_attention(teacher_attn, student_attn):
  """TextBrewer's summed-heads baseline, per example: (1/(q k)) Σ_{q,k} (Σ_h A^T_h − Σ_h A^S_h)².

  Any head counts work, but the rows of Σ_h A_h sum to H, so with H_t ≠ H_s a mass difference
  of (H_t − H_s) per row is left that no student can remove — the reason AMAD aligns heads
  instead (PAPERS.md §3).

  Returns:
    [batch] float32.
  """
  _check_maps(teacher_attn, student_attn)
  checks.require_dim(
      "teacher_attn", teacher_attn, 3, "student_attn", student_attn, 3, "Key lengths"
  )
  teacher_attn, student_attn = checks.as_float32(teacher_attn, student_attn)
  difference = jnp.sum(teacher_attn, axis=1) - jnp.sum(student_attn, axis=1)
  return jnp.mean(jnp.square(difference), axis=(-2, -1))


def head_group_pooled_attention(teacher_attn, student_attn, *, kind: str = "mse"):
  """Tunix-style head pooling, per example: the teacher's heads averaged in contiguous groups
  of g = H_t / H_s, Ā^T_i = (1/g) Σ_{h=ig}^{ig+g−1} A^T_h, then `one_to_one_attention(Ā^T, A^S)`:
  "mse" (1/(H_s q k)) Σ (Ā^T − A^S)², "kl" (1/(H_s q)) Σ_{i,q} KL(Ā^T_{i,q} ‖ A^S_{i,q}).

  Needs H_t divisible by H_s (g = 1 is plain one-to-one).

  Returns:
    [batch] float32.
  """
  _check_maps(teacher_attn, student_attn)
  batch, h_t, q, k = jnp.shape(teacher_attn)
  h_s = jnp.shape(student_attn)[1]
  if h_t % h_s:
    raise ValueError(
        f"head_group_pooled_attention needs the teacher's head count to be a multiple of the "
        f"student's, but teacher_attn has shape {tuple(jnp.shape(teacher_attn))} ({h_t} heads) "
        f"and student_attn {tuple(jnp.shape(student_attn))} ({h_s} heads); use amad()."
    )
  teacher_attn = checks.as_float32(teacher_attn)  # pool in float32, as every loss computes
  pooled = jnp.mean(jnp.reshape(teacher_attn, (batch, h_s, h_t // h_s, q, k)), axis=2)
  return one_to_one_attention(pooled, student_attn, kind=kind)
