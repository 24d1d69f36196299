"""Knowledge base build / save / load / refusal and exact search correctness."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kd_jax import retrieval as R


def _batches(rng, count, batch, dim, classes, pad_last=0):
  for i in range(count):
    mask = np.ones(batch, bool)
    if i == count - 1 and pad_last:
      mask[-pad_last:] = False
    yield {
        "x": rng.normal(size=(batch, dim)).astype(np.float32),
        "label": rng.integers(0, classes, batch),
        "mask": mask,
    }


def _teacher(batch):
  x = batch["x"]
  return x * 2.0, x[:, :3]  # embedding, logits over 3 classes


@pytest.fixture()
def kb():
  return R.build_knowledge_base(
      _teacher,
      _batches(np.random.default_rng(0), 4, 8, 5, 3, 3),
      teacher_id="teacher@step100",
      temperature=2.0,
      total=4,
  )


def test_build_drops_padding_and_stores_soft_labels(kb):
  assert kb.size == 4 * 8 - 3 and kb.embedding_dim == 5 and kb.num_classes == 3
  first = next(_batches(np.random.default_rng(0), 4, 8, 5, 3, 3))
  z = first["x"][:, :3] / 2.0
  expected = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
  np.testing.assert_allclose(kb.soft_labels[:8], expected, rtol=1e-5)
  np.testing.assert_allclose(kb.embeddings[:8], first["x"] * 2.0)
  np.testing.assert_array_equal(kb.labels[:8], first["label"])


def test_save_load_round_trip_and_refusals(kb, tmp_path):
  directory = str(tmp_path / "kb")
  R.save_knowledge_base(kb, directory)
  loaded = R.load_knowledge_base(
      directory, teacher_id="teacher@step100", embedding_dim=5, num_classes=3
  )
  np.testing.assert_array_equal(loaded.embeddings, kb.embeddings)
  np.testing.assert_array_equal(loaded.soft_labels, kb.soft_labels)
  np.testing.assert_array_equal(loaded.labels, kb.labels)
  with pytest.raises(R.KnowledgeBaseError, match="already holds"):
    R.save_knowledge_base(kb, directory)
  with pytest.raises(R.KnowledgeBaseError, match=r"teacher_id is 'teacher@step100' but 'other'"):
    R.load_knowledge_base(directory, teacher_id="other")
  with pytest.raises(R.KnowledgeBaseError, match="embedding_dim is 5 but 384"):
    R.load_knowledge_base(directory, embedding_dim=384)
  with pytest.raises(R.KnowledgeBaseError, match="num_classes is 3 but 2"):
    R.load_knowledge_base(directory, num_classes=2)
  # A corrupted arrays file is refused by its checksum.
  path = os.path.join(directory, R.knowledge_base.ARRAYS_FILE)
  data = bytearray(open(path, "rb").read())
  data[-1] ^= 0xFF
  open(path, "wb").write(bytes(data))
  with pytest.raises(R.KnowledgeBaseError, match="checksum"):
    R.load_knowledge_base(directory)


def test_missing_and_future_format_are_refused(kb, tmp_path):
  with pytest.raises(R.KnowledgeBaseError, match="manifest.json is missing"):
    R.load_knowledge_base(str(tmp_path / "nothing"))
  directory = str(tmp_path / "kb")
  R.save_knowledge_base(kb, directory)
  manifest = os.path.join(directory, "manifest.json")
  data = json.load(open(manifest))
  data["format_version"] = 99
  json.dump(data, open(manifest, "w"))
  with pytest.raises(R.KnowledgeBaseError, match="format_version 99"):
    R.load_knowledge_base(directory)


def test_inconsistent_arrays_are_refused():
  with pytest.raises(R.KnowledgeBaseError, match="disagree"):
    R.KnowledgeBase(np.zeros((4, 3)), np.zeros((5, 2)), np.zeros(4), "t")


@pytest.mark.parametrize("num,k,block", [(10, 1, 3), (100, 7, 16), (50, 50, 64)])
def test_exact_top_k_matches_numpy(num, k, block):
  rng = np.random.default_rng(num)
  db, q = rng.normal(size=(num, 6)).astype(np.float32), rng.normal(size=(9, 6)).astype(np.float32)
  idx, scores = R.exact_top_k(q, db, k=k, max_chunk_scores=block)
  full = q @ db.T
  expected = np.argsort(-full, axis=1, kind="stable")[:, :k]
  np.testing.assert_allclose(scores, np.take_along_axis(full, expected, 1), rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(np.sort(idx, 1), np.sort(expected, 1))


def test_exact_top_k_runs_inside_jit_and_checks_inputs():
  db = np.random.default_rng(1).normal(size=(40, 4))
  db = jnp.asarray(db / np.linalg.norm(db, axis=1, keepdims=True), jnp.float32)
  f = jax.jit(lambda q: R.exact_top_k(q, db, k=3, max_chunk_scores=8)[0])
  # Unit vectors: each entry's nearest neighbour by inner product is itself.
  np.testing.assert_array_equal(f(db[np.array([5, 17, 39])])[:, 0], [5, 17, 39])
  with pytest.raises(ValueError, match="dimensions differ"):
    R.exact_top_k(jnp.zeros((2, 5)), db, k=3)
  with pytest.raises(ValueError, match="k must be"):
    R.exact_top_k(db[:2], db, k=41)


def test_recall_at_k_counts_overlap():
  assert R.recall_at_k([[1, 2], [3, 4]], [[2, 1], [3, 5]]) == 0.75
