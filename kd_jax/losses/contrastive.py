"""Contrastive losses.

- `supervised_contrastive`: SupCon (Khosla et al., NeurIPS 2020, "Supervised Contrastive
  Learning", the L_out form), which ReAugKD uses to train the linear projection on top of the
  teacher encoder before the knowledge base is built (PAPERS.md §2, step 1: same label =
  positive).

Pure and unreduced like the rest of `kd_jax.losses`: one value per anchor, float32 inside.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from kd_jax.losses import checks
from kd_jax.losses.relational import l2_normalize


def supervised_contrastive(embeddings, labels, *, temperature: float):
  """SupCon L_out per anchor, with its validity mask.

  With z_i = e_i/‖e_i‖, A(i) = {a ≠ i} and positives P(i) = {p ∈ A(i): y_p = y_i}:

    L_i = −(1/|P(i)|) Σ_{p∈P(i)} log( exp(z_i·z_p/τ) / Σ_{a∈A(i)} exp(z_i·z_a/τ) ).

  An anchor without any positive in the batch has no defined loss: L_i = 0 there and
  `has_positive[i]` is False, so the caller averages over the valid anchors only
  (Σ_i L_i / max(Σ_i has_positive_i, 1)), as Khosla et al.'s reference code does.

  Args:
    embeddings: [batch, d] (normalised inside).
    labels: [batch] integer class ids.
    temperature: τ > 0 (Khosla et al. use 0.1; 0.07 in their ImageNet runs).
  Returns:
    (loss [batch] float32, has_positive [batch] bool).
  """
  checks.require_rank("embeddings", embeddings, 2)
  checks.require_rank("labels", labels, 1)
  checks.require_dim("embeddings", embeddings, 0, "labels", labels, 0, "Batch sizes")
  if not jnp.issubdtype(jnp.result_type(labels), jnp.integer):
    raise ValueError(f"labels must be integer class ids, got dtype {jnp.result_type(labels)}.")
  checks.require_positive("temperature", temperature)
  z = l2_normalize(checks.as_float32(embeddings))
  n = z.shape[0]
  not_self = ~jnp.eye(n, dtype=bool)
  logits = (z @ z.T) / temperature
  # The anchor itself is excluded from the denominator: −inf gives it zero weight exactly.
  log_prob = logits - jax.nn.logsumexp(
      jnp.where(not_self, logits, -jnp.inf), axis=-1, keepdims=True
  )
  positive = (labels[:, None] == labels[None, :]) & not_self
  num_positive = jnp.sum(positive, axis=-1)
  # where() before the sum: log_prob is finite everywhere, but keep the diagonal out explicitly.
  summed = jnp.sum(jnp.where(positive, log_prob, 0.0), axis=-1)
  loss = -summed / jnp.maximum(num_positive, 1)
  return checks.nan_unless_positive(loss, temperature), num_positive > 0
