"""Nearest-neighbour search over a knowledge base: exact (JAX) and approximate (ScaNN).

Both backends answer `search(queries, k) -> (indices [q, k] int32, scores [q, k] float32)` with
scores the inner products, highest first. With `normalize=True` (the default) database and
queries are L2-normalised, so scores are cosine similarities, as ReAugKD's reconstruction uses
(docs/PAPERS.md §2).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from kd_jax.losses.relational import l2_normalize


@functools.partial(jax.jit, static_argnames=("k", "block_size"))
def exact_top_k(queries, database, *, k: int, block_size: int = 4096):
  """Exact top-k inner-product search, blocked over the database; usable inside `jit`.

  The database is scanned in blocks of `block_size` rows: each block keeps its own top-k and the
  running top-k is merged with it, so memory is O(q·(block_size + k)) rather than O(q·N).

  Args:
    queries: [q, d]; database: [N, d] (N ≥ k).
  Returns:
    indices [q, k] int32 into the database, scores [q, k] float32, best first.
  """
  num, dim = database.shape
  if queries.shape[-1] != dim:
    raise ValueError(f"queries have shape {queries.shape} but the database has shape "
                     f"{database.shape}: embedding dimensions differ.")
  if not 1 <= k <= num:
    raise ValueError(f"k must be in [1, {num}] for a database of {num} entries, got {k}.")
  queries = queries.astype(jnp.float32)
  block = min(block_size, num)
  blocks = -(-num // block)
  padded = jnp.pad(database.astype(jnp.float32), ((0, blocks * block - num), (0, 0)))
  padded = padded.reshape(blocks, block, dim)

  def merge(carry, inputs):
    best_scores, best_indices = carry
    rows, offset = inputs
    scores = queries @ rows.T
    ids = offset + jnp.arange(block)
    scores = jnp.where(ids[None, :] < num, scores, -jnp.inf)  # padding never wins
    block_scores, block_pos = jax.lax.top_k(scores, min(k, block))
    merged_scores = jnp.concatenate([best_scores, block_scores], axis=1)
    merged_ids = jnp.concatenate([best_indices, ids[block_pos]], axis=1)
    top_scores, pos = jax.lax.top_k(merged_scores, k)
    return (top_scores, jnp.take_along_axis(merged_ids, pos, axis=1)), None

  init = (jnp.full((queries.shape[0], k), -jnp.inf, jnp.float32),
          jnp.zeros((queries.shape[0], k), jnp.int32))
  offsets = jnp.arange(blocks, dtype=jnp.int32) * block
  (scores, indices), _ = jax.lax.scan(merge, init, (padded, offsets))
  return indices, scores


class ExactSearcher:
  """Exact search in JAX (blocked matmul + `top_k`). The reference the approximate one is judged by."""

  def __init__(self, database, *, normalize: bool = True, block_size: int = 4096):
    database = jnp.asarray(database, jnp.float32)
    self.normalize = normalize
    self.database = l2_normalize(database) if normalize else database
    self.block_size = block_size

  def search(self, queries, k: int):
    queries = jnp.asarray(queries, jnp.float32)
    if self.normalize:
      queries = l2_normalize(queries)
    indices, scores = exact_top_k(queries, self.database, k=k, block_size=self.block_size)
    return np.asarray(indices), np.asarray(scores)


@dataclasses.dataclass(frozen=True)
class ScannParams:
  """ScaNN's tree + asymmetric hashing + reorder settings (all exposed; see the ScaNN docs).

  num_leaves ≈ √N is the usual start; num_leaves_to_search trades recall for speed;
  reorder re-scores that many candidates exactly.
  """
  num_leaves: int = 64
  num_leaves_to_search: int = 16
  training_sample_size: int = 100_000
  dims_per_block: int = 2
  anisotropic_quantization_threshold: float = 0.2
  reorder: int = 100


class ScannSearcher:
  """Approximate maximum inner-product search with ScaNN (tree → AH scoring → exact reorder)."""

  def __init__(self, database, *, params: ScannParams = ScannParams(), normalize: bool = True,
               default_k: int = 10):
    import scann  # imported here: exact search and the rest of kd_jax do not need it.
    database = np.asarray(database, np.float32)
    if normalize:
      database = np.asarray(l2_normalize(jnp.asarray(database)))
    self.normalize = normalize
    self.params = params
    num = database.shape[0]
    leaves = max(1, min(params.num_leaves, num // 2))
    builder = scann.scann_ops_pybind.builder(database, default_k, "dot_product")
    builder = builder.tree(
        num_leaves=leaves, num_leaves_to_search=max(1, min(params.num_leaves_to_search, leaves)),
        training_sample_size=min(params.training_sample_size, num))
    builder = builder.score_ah(
        params.dims_per_block,
        anisotropic_quantization_threshold=params.anisotropic_quantization_threshold)
    self._searcher = builder.reorder(max(params.reorder, default_k)).build()
    self.size = num

  def search(self, queries, k: int):
    if not 1 <= k <= self.size:
      raise ValueError(f"k must be in [1, {self.size}] for a database of {self.size} entries.")
    queries = np.asarray(queries, np.float32)
    if self.normalize:
      queries = np.asarray(l2_normalize(jnp.asarray(queries)))
    indices, scores = self._searcher.search_batched(
        queries, final_num_neighbors=k, pre_reorder_num_neighbors=max(self.params.reorder, k))
    return np.asarray(indices, np.int32), np.asarray(scores, np.float32)


def recall_at_k(approximate_indices, exact_indices) -> float:
  """Mean over queries of |approx top-k ∩ exact top-k| / k."""
  approximate_indices, exact_indices = np.asarray(approximate_indices), np.asarray(exact_indices)
  if approximate_indices.shape != exact_indices.shape:
    raise ValueError(f"approximate indices {approximate_indices.shape} and exact indices "
                     f"{exact_indices.shape} must have the same shape [queries, k].")
  k = exact_indices.shape[1]
  hits = [len(set(a) & set(e)) for a, e in zip(approximate_indices, exact_indices)]
  return float(np.mean(hits) / k)
