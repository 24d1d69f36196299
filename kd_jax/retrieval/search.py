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

_NORM_EPS = 1e-12  # the clamp of `l2_normalize`, for the NumPy copy below


# Scores per query chunk: 2**27 float32 = 512 MiB, e.g. 128 queries against 1 M entries.
MAX_CHUNK_SCORES = 2**27


def query_chunk_rows(num_queries: int, num: int, max_chunk_scores: int = MAX_CHUNK_SCORES) -> int:
  """Queries per chunk of `exact_top_k`: the fewest chunks that keep each one's scores within
  `max_chunk_scores`, with the queries spread evenly over them.

  Even chunks rather than full ones and a short last one: the last chunk is padded to the
  chunk size, so 1000 queries against 200 k entries (at most 671 rows a chunk) ran as 2 × 671
  rows, a third more matmul than needed (0.72× the QPS of a plain loop over 671 + 329 rows on
  a CPU); as 2 × 500 nothing is padded.
  """
  most_rows = max(1, min(num_queries, max_chunk_scores // num))
  chunks = -(-num_queries // most_rows)
  return -(-num_queries // chunks)


@functools.partial(jax.jit, static_argnames=("k", "max_chunk_scores", "recall_target", "precision"))
def exact_top_k(
    queries,
    database,
    *,
    k: int,
    max_chunk_scores: int = MAX_CHUNK_SCORES,
    recall_target: float = 1.0,
    precision=None,
):
  """Top-k inner-product search: one matmul + `top_k` per chunk of queries; usable inside `jit`.

  Queries are processed in even chunks of at most `max(1, max_chunk_scores // N)` rows
  (`query_chunk_rows`, `lax.map`), so the score matrix alive at once is at most
  `max_chunk_scores` floats (plus one row) — memory stays
  bounded however many queries come, while each chunk is a single large matmul and one `top_k`,
  the two operations accelerators are best at. (An earlier version scanned the database in
  blocks and merged running top-k lists; the merges serialised the work and ran at 0.16× of
  this on an H200.)

  Args:
    queries: [q, d]; database: [N, d] (N ≥ k).
    recall_target: 1.0 for the exact `lax.top_k`; below 1, `lax.approx_max_k` with that recall
      target (fast on TPUs; benchmarks/retrieval.py reports the recall it reaches).
    precision: the matmul's `lax.Precision`; None is the backend default (TF32 on recent NVIDIA
      GPUs, which can swap near-ties; pass `jax.lax.Precision.HIGHEST` for float32 products).
  Returns:
    indices [q, k] int32 into the database, scores [q, k] float32, best first.
  """
  num, dim = database.shape
  if queries.shape[-1] != dim:
    raise ValueError(
        f"queries have shape {queries.shape} but the database has shape "
        f"{database.shape}: embedding dimensions differ."
    )
  if not 1 <= k <= num:
    raise ValueError(f"k must be in [1, {num}] for a database of {num} entries, got {k}.")
  if not 0.0 < recall_target <= 1.0:
    raise ValueError(f"recall_target must be in (0, 1], got {recall_target}.")
  queries, database = queries.astype(jnp.float32), database.astype(jnp.float32)
  num_queries = queries.shape[0]
  chunk = query_chunk_rows(num_queries, num, max_chunk_scores)
  chunks = -(-num_queries // chunk)

  def search_chunk(rows):
    scores = jnp.matmul(rows, database.T, precision=precision)
    if recall_target < 1.0:
      top_scores, top_indices = jax.lax.approx_max_k(scores, k, recall_target=recall_target)
    else:
      top_scores, top_indices = jax.lax.top_k(scores, k)
    return top_scores, top_indices.astype(jnp.int32)

  if chunks == 1:
    scores, indices = search_chunk(queries)
  else:
    padded = jnp.pad(queries, ((0, chunks * chunk - num_queries), (0, 0)))
    scores, indices = jax.lax.map(search_chunk, padded.reshape(chunks, chunk, dim))
    scores = scores.reshape(-1, k)[:num_queries]
    indices = indices.reshape(-1, k)[:num_queries]
  return indices, scores


class ExactSearcher:
  """Exact search in JAX (chunked matmul + `top_k`). The reference the approximate one is judged by.

  The database is put on the default device once; `max_chunk_scores` bounds the score matrix.
  """

  def __init__(self, database, *, normalize: bool = True, max_chunk_scores: int = MAX_CHUNK_SCORES):
    database = jnp.asarray(database, jnp.float32)
    self.normalize = normalize
    self.database = l2_normalize(database) if normalize else database
    self.max_chunk_scores = max_chunk_scores

  def search(self, queries, k: int):
    queries = jnp.asarray(queries, jnp.float32)
    if self.normalize:
      queries = l2_normalize(queries)
    indices, scores = exact_top_k(
        queries, self.database, k=k, max_chunk_scores=self.max_chunk_scores
    )
    return np.asarray(indices), np.asarray(scores)


@dataclasses.dataclass(frozen=True)
class ScannParams:
  """ScaNN's tree + asymmetric hashing + reorder settings (all exposed; see the ScaNN docs).

  num_leaves ≈ √N is the usual start; num_leaves_to_search trades recall for speed;
  reorder re-scores that many candidates exactly. `seed` seeds the two k-means trainings (the
  tree's partitions and the hashing codebooks): the same data and settings build the same index.
  """

  num_leaves: int = 64
  num_leaves_to_search: int = 16
  training_sample_size: int = 100_000
  dims_per_block: int = 2
  anisotropic_quantization_threshold: float = 0.2
  reorder: int = 100
  seed: int = 0


def _normalize_rows(x: np.ndarray) -> np.ndarray:
  """`l2_normalize` in NumPy: ScaNN lives on the host, so its data need not visit the device."""
  squared = np.sum(np.square(x, dtype=np.float32), axis=-1, keepdims=True)
  return (x / np.sqrt(np.maximum(squared, _NORM_EPS * _NORM_EPS))).astype(np.float32)


def seeded_config(config: str, seed: int) -> str:
  """ScaNN's text config with explicit seeds for its k-means trainings.

  ScaNN's builder exposes no seed: its random tree initialisation draws differently in every
  build (recall@k of one ReAugKD knowledge base ranged 0.40–0.94 across identical runs), so the
  tree uses k-means++ (`random_init=False`) and both trainings get `seed` here.
  """
  stanzas = {
      "partitioning {": f"clustering_seed: {seed}",
      "asymmetric_hash {": f"clustering_seed: {seed} sampling_seed: {seed}",
  }
  for opening, seeds in stanzas.items():
    if config.count(opening) != 1:
      raise RuntimeError(f"ScaNN config without exactly one {opening!r} stanza:\n{config}")
    config = config.replace(opening, f"{opening}\n {seeds}")
  return config


class ScannSearcher:
  """Approximate maximum inner-product search with ScaNN (tree → AH scoring → exact reorder).

  Builds are seeded (`ScannParams.seed`): the same data and settings give the same index, so
  recall and accuracy with ScaNN reproduce across runs. Searches use ScaNN's
  `search_batched_parallel` (all host cores); benchmarks/retrieval.py checks this wrapper
  against raw ScaNN with the same parameters (`self.config` is the exact config it built).
  """

  def __init__(
      self,
      database,
      *,
      params: ScannParams = ScannParams(),
      normalize: bool = True,
      default_k: int = 10,
  ):
    import scann  # imported here: exact search and the rest of kd_jax do not need it.

    database = np.asarray(database, np.float32)
    if normalize:
      database = _normalize_rows(database)
    self.normalize = normalize
    self.params = params
    num = database.shape[0]
    leaves = max(1, min(params.num_leaves, num // 2))
    builder = scann.scann_ops_pybind.builder(database, default_k, "dot_product")
    builder = builder.tree(
        num_leaves=leaves,
        num_leaves_to_search=max(1, min(params.num_leaves_to_search, leaves)),
        training_sample_size=min(params.training_sample_size, num),
        random_init=False,  # k-means++ from `clustering_seed`, not ScaNN's unseeded random init
    )
    builder = builder.score_ah(
        params.dims_per_block,
        anisotropic_quantization_threshold=params.anisotropic_quantization_threshold,
        training_sample_size=min(params.training_sample_size, num),
    )
    builder = builder.reorder(max(params.reorder, default_k))
    self.config = seeded_config(builder.create_config(), params.seed)
    self._searcher = scann.scann_ops_pybind.create_searcher(
        database, self.config, builder.training_threads
    )
    self.size = num

  def search(self, queries, k: int, *, leaves_to_search: int | None = None):
    """Top-k of each query; `leaves_to_search` overrides `params.num_leaves_to_search` for this
    call (the recall/speed knob, no rebuild needed)."""
    if not 1 <= k <= self.size:
      raise ValueError(f"k must be in [1, {self.size}] for a database of {self.size} entries.")
    queries = np.asarray(queries, np.float32)
    if self.normalize:
      queries = _normalize_rows(queries)
    indices, scores = self._searcher.search_batched_parallel(
        queries,
        final_num_neighbors=k,
        pre_reorder_num_neighbors=max(self.params.reorder, k),
        leaves_to_search=leaves_to_search,
    )
    return np.asarray(indices, np.int32), np.asarray(scores, np.float32)


def recall_at_k(approximate_indices, exact_indices) -> float:
  """Mean over queries of |approx top-k ∩ exact top-k| / k."""
  approximate_indices, exact_indices = np.asarray(approximate_indices), np.asarray(exact_indices)
  if approximate_indices.shape != exact_indices.shape:
    raise ValueError(
        f"approximate indices {approximate_indices.shape} and exact indices "
        f"{exact_indices.shape} must have the same shape [queries, k]."
    )
  k = exact_indices.shape[1]
  hits = [len(set(a) & set(e)) for a, e in zip(approximate_indices, exact_indices)]
  return float(np.mean(hits) / k)
