"""ScaNN recall against exact search on real MiniLM-L6 sentence embeddings of Rotten Tomatoes.

The knowledge base of ReAugKD holds teacher embeddings of real text; recall is measured on such
embeddings (the real pretrained teacher on real snippets), not on random vectors, whose
near-uniform similarities make approximate search look harder or easier than it is.
"""

import jax
import numpy as np
import pytest

from kd_jax import retrieval as R

NUM_SNIPPETS = 1536
MAX_LENGTH = 40


@pytest.fixture(scope="module")
def minilm_embeddings():
  from kd_jax.data import get_source
  from kd_jax.models import bert

  source = get_source("rotten_tomatoes", "train")
  texts = [str(source[i]["text"]) for i in range(NUM_SNIPPETS)]
  labels = np.array([int(source[i]["label"]) for i in range(NUM_SNIPPETS)])
  directory = bert.minilm_directory()
  model, variables = bert.load_hf_bert(directory)
  tokenizer = bert.load_tokenizer(directory, max_length=MAX_LENGTH)
  encode = jax.jit(lambda tokens: model.apply(variables, tokens, train=False)["embedding"])
  chunks = [
      np.asarray(encode(bert.tokenize(tokenizer, texts[i : i + 256])))
      for i in range(0, NUM_SNIPPETS, 256)
  ]
  return np.concatenate(chunks), labels


def test_embeddings_are_real_sentence_embeddings(minilm_embeddings):
  emb, labels = minilm_embeddings
  assert emb.shape == (NUM_SNIPPETS, 384) and np.all(np.isfinite(emb))
  # A real sentence encoder puts reviews of the same polarity closer on average than random
  # vectors would (random 384-d directions have cosine ≈ 0 either way).
  unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
  sims = unit @ unit.T
  same = sims[labels[:, None] == labels[None, :]].mean()
  assert 0.05 < sims.mean() < 0.9 and same > sims.mean()


def test_scann_recall_against_exact_search(minilm_embeddings):
  emb, labels = minilm_embeddings
  kb = R.KnowledgeBase(emb, np.eye(2)[labels], labels, teacher_id="all-MiniLM-L6-v2")
  # Every leaf searched: only the asymmetric-hashing scores are approximate, and re-scoring 32
  # candidates exactly recovers the true top-10.
  every_leaf = R.ScannParams(num_leaves=16, num_leaves_to_search=16, reorder=32)
  assert kb.scann_recall(k=10, params=every_leaf, num_queries=200) >= 0.99
  # Half the leaves: the tree now misses some neighbours (measured 0.90-0.93 here).
  half = R.ScannParams(num_leaves=16, num_leaves_to_search=8, reorder=64)
  recall = kb.scann_recall(k=10, params=half, num_queries=200)
  assert recall >= 0.85, recall
  # One leaf of 32 and no extra reordering must cost recall: the parameters are really used.
  coarse = R.ScannParams(num_leaves=32, num_leaves_to_search=1, reorder=10)
  assert kb.scann_recall(k=10, params=coarse, num_queries=200) < 0.6


def test_scann_searcher_reports_recall_at_build(minilm_embeddings):
  emb, labels = minilm_embeddings
  kb = R.KnowledgeBase(emb, np.eye(2)[labels], labels, teacher_id="all-MiniLM-L6-v2")
  searcher = kb.searcher(
      "scann", params=R.ScannParams(num_leaves=16, num_leaves_to_search=16), default_k=5
  )
  assert searcher.recall_at_k >= 0.99
  idx, scores = searcher.search(emb[:3], 5)
  assert idx.shape == (3, 5) and np.all(np.diff(scores, axis=1) <= 1e-6)
  np.testing.assert_array_equal(idx[:, 0], [0, 1, 2])
