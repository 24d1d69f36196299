"""exact_top_k: the NumPy answer whatever the chunking, inside jit, with bounded score chunks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kd_jax.retrieval import ExactSearcher, ScannSearcher, exact_top_k, recall_at_k, search


def unit_rows(rng, n, d):
  x = rng.normal(size=(n, d)).astype(np.float32)
  return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def data():
  rng = np.random.default_rng(0)
  database, queries = unit_rows(rng, 1000, 16), unit_rows(rng, 37, 16)
  scores = queries.astype(np.float64) @ database.T.astype(np.float64)
  return database, queries, np.argsort(-scores, axis=1)[:, :5], np.sort(scores, axis=1)[:, ::-1]


# 1000 × 37 scores: one chunk, chunks of 8 queries (last one padded), 2 even chunks of 19 (at
# most 20 rows a chunk), and one query per chunk.
@pytest.mark.parametrize("max_chunk_scores", [2**27, 8 * 1000, 20 * 1000, 1])
def test_exact_top_k_equals_numpy(data, max_chunk_scores):
  database, queries, best, sorted_scores = data
  indices, scores = exact_top_k(
      queries, database, k=5, max_chunk_scores=max_chunk_scores, precision=jax.lax.Precision.HIGHEST
  )
  assert indices.shape == (37, 5) and indices.dtype == jnp.int32
  np.testing.assert_array_equal(indices, best)
  np.testing.assert_allclose(scores, sorted_scores[:, :5], atol=1e-5)


def test_query_chunks_are_the_fewest_within_the_bound_and_even():
  # 1000 queries, 200 k entries: at most 671 rows a chunk; 2 × 500, not 2 × 671 (a third padding).
  assert search.query_chunk_rows(1000, 200_000) == 500
  for num_queries in range(1, 60):
    for most_rows in range(1, 70):
      rows = search.query_chunk_rows(num_queries, 10, max_chunk_scores=10 * most_rows)
      chunks = -(-num_queries // rows)
      assert rows <= most_rows
      assert chunks == -(-num_queries // min(most_rows, num_queries))  # the fewest chunks
      assert chunks * rows - num_queries < chunks  # under one padded row a chunk


def test_exact_top_k_inside_jit_and_errors(data):
  database, queries, best, _ = data
  step = jax.jit(lambda q, db: exact_top_k(q * 2.0, db, k=5)[0])  # a scale keeps the order
  np.testing.assert_array_equal(step(queries, database), best)
  with pytest.raises(ValueError, match="k must be in"):
    exact_top_k(queries, database, k=1001)
  with pytest.raises(ValueError, match="dimensions differ"):
    exact_top_k(queries[:, :8], database, k=1)
  with pytest.raises(ValueError, match="recall_target"):
    exact_top_k(queries, database, k=1, recall_target=0.0)


def test_approximate_top_k_reaches_its_recall_target(data):
  database, queries, best, _ = data
  indices, scores = exact_top_k(queries, database, k=5, recall_target=0.9)
  assert recall_at_k(indices, best) >= 0.9
  assert np.all(np.diff(np.asarray(scores), axis=1) <= 0)  # best first


def test_exact_searcher_normalizes(data):
  database, queries, best, _ = data
  searcher = ExactSearcher(database * 3.0, max_chunk_scores=4000)
  indices, scores = searcher.search(queries * 0.5, 5)
  np.testing.assert_array_equal(indices, best)
  assert np.all(scores <= 1.0 + 1e-6)


def test_scann_leaves_to_search_at_query_time(data):
  """Searching every leaf with a full reorder is exact; one leaf of 16 finds less."""
  database, queries, best, _ = data
  params = search.ScannParams(num_leaves=16, num_leaves_to_search=1, reorder=1000)
  searcher = ScannSearcher(database, params=params, default_k=5)
  every_leaf, _ = searcher.search(queries, 5, leaves_to_search=16)
  np.testing.assert_array_equal(every_leaf, best)
  one_leaf, _ = searcher.search(queries, 5)
  assert recall_at_k(one_leaf, best) < 1.0
