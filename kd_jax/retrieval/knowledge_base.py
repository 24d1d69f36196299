"""A teacher knowledge base: per training example the teacher embedding, soft labels and label.

ReAugKD (docs/PAPERS.md §2) stores, for every training input, the (projected) teacher embedding
and the teacher's soft labels; at inference the student's embedding retrieves its neighbours and
their soft labels are mixed into the prediction. The base is saved as one safetensors file of
arrays plus a JSON manifest (format, dimensions, count, teacher identity, SHA-256 of the arrays)
— no pickle — and a base that does not match what the caller expects is refused by name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Callable, Iterable

import numpy as np
from absl import logging
from safetensors.numpy import load_file, save_file
from tqdm import tqdm

from kd_jax.retrieval.search import ExactSearcher, ScannParams, ScannSearcher, recall_at_k

FORMAT_VERSION = 1
ARRAYS_FILE = "knowledge_base.safetensors"
MANIFEST_FILE = "manifest.json"


class KnowledgeBaseError(ValueError):
  """A knowledge base is missing, corrupt, or does not match the teacher/student using it."""


def _content_problem(embeddings, soft_labels, labels) -> str | None:
  """What makes these arrays an unusable base (one line), or None.

  Retrieval mixes neighbours' soft labels into predictions: a NaN embedding poisons every
  distance, a negative or unnormalised soft label is not a distribution, a label outside the
  class range breaks the label-aware anchors — all silently, which is why they are refused here.
  """
  count, classes = soft_labels.shape
  if count == 0:
    return "it is empty (0 entries)."
  if embeddings.shape[1] == 0 or classes == 0:
    return f"zero-sized arrays: embedding_dim={embeddings.shape[1]}, num_classes={classes}."
  bad = ~np.isfinite(embeddings).all(axis=1)
  if bad.any():
    return (
        f"{int(bad.sum())} of {count} embeddings are not finite (NaN or inf), first at "
        f"entry {int(np.argmax(bad))}."
    )
  bad = ~np.isfinite(soft_labels).all(axis=1) | (soft_labels < 0).any(axis=1)
  if bad.any():
    return (
        f"{int(bad.sum())} of {count} soft-label rows have negative or non-finite "
        f"values, first at entry {int(np.argmax(bad))}."
    )
  sums = soft_labels.sum(axis=1, dtype=np.float64)
  bad = np.abs(sums - 1.0) > 1e-3
  if bad.any():
    first = int(np.argmax(bad))
    return (
        f"{int(bad.sum())} of {count} soft-label rows do not sum to 1 (entry {first} sums "
        f"to {sums[first]:.6g}); soft labels must be probabilities."
    )
  bad = (labels < 0) | (labels >= classes)
  if bad.any():
    first = int(np.argmax(bad))
    return (
        f"{int(bad.sum())} of {count} labels are outside [0, num_classes={classes}) "
        f"(entry {first} has label {int(labels[first])})."
    )
  return None


@dataclasses.dataclass
class KnowledgeBase:
  """Arrays aligned on the example axis, and who produced them."""

  embeddings: np.ndarray  # [N, d] float32, teacher embeddings (after the learned projection)
  soft_labels: np.ndarray  # [N, C] float32, teacher probabilities σ(z_t/τ)
  labels: np.ndarray  # [N] int32, ground truth
  teacher_id: str  # e.g. checkpoint path + step; compared on load

  def __post_init__(self):
    self.embeddings = np.asarray(self.embeddings, np.float32)
    self.soft_labels = np.asarray(self.soft_labels, np.float32)
    labels = np.asarray(self.labels)
    n = self.embeddings.shape[0] if self.embeddings.ndim else 0
    if (
        self.embeddings.ndim != 2
        or self.soft_labels.ndim != 2
        or labels.shape != (n,)
        or self.soft_labels.shape[0] != n
    ):
      raise KnowledgeBaseError(
          f"knowledge base arrays disagree: embeddings {self.embeddings.shape}, soft_labels "
          f"{self.soft_labels.shape}, labels {labels.shape}; expected [N, d], [N, C], [N]."
      )
    if labels.dtype.kind not in "iu" and not (
        labels.dtype.kind == "f" and np.all(np.isfinite(labels) & (labels == np.round(labels)))
    ):
      raise KnowledgeBaseError(
          f"knowledge base labels must be integer class ids, got dtype "
          f"{labels.dtype} with non-integer values."
      )
    self.labels = labels.astype(np.int32)
    problem = _content_problem(self.embeddings, self.soft_labels, self.labels)
    if problem:
      raise KnowledgeBaseError(f"knowledge base {self.teacher_id!r}: {problem}")

  @property
  def size(self) -> int:
    return self.embeddings.shape[0]

  @property
  def embedding_dim(self) -> int:
    return self.embeddings.shape[1]

  @property
  def num_classes(self) -> int:
    return self.soft_labels.shape[1]

  def searcher(
      self, backend: str = "scann", *, params: ScannParams = ScannParams(), default_k: int = 10
  ):
    """A search index over the embeddings: "scann" (approximate) or "exact" (JAX)."""
    if backend == "exact":
      return ExactSearcher(self.embeddings)
    if backend == "scann":
      searcher = ScannSearcher(self.embeddings, params=params, default_k=default_k)
      # Approximate search is only as good as its recall: measure it at build time, every time.
      searcher.recall_at_k = self.scann_recall(default_k, params=params, searcher=searcher)
      logging.info(
          "ScaNN over %d entries: recall@%d against exact search = %.3f",
          self.size,
          default_k,
          searcher.recall_at_k,
      )
      return searcher
    raise ValueError(f"backend must be 'scann' or 'exact', got {backend!r}.")

  def scann_recall(
      self,
      k: int = 10,
      *,
      params: ScannParams = ScannParams(),
      num_queries: int = 256,
      seed: int = 0,
      searcher: ScannSearcher | None = None,
  ) -> float:
    """Recall@k of ScaNN against exact search, queried with a sample of the base's own entries."""
    rng = np.random.default_rng(seed)
    queries = self.embeddings[rng.choice(self.size, min(num_queries, self.size), replace=False)]
    if searcher is None:
      searcher = ScannSearcher(self.embeddings, params=params, default_k=k)
    approx, _ = searcher.search(queries, k)
    exact, _ = ExactSearcher(self.embeddings).search(queries, k)
    return recall_at_k(approx, exact)


def build_knowledge_base(
    teacher_fn: Callable,
    batches: Iterable[dict],
    *,
    teacher_id: str,
    temperature: float = 1.0,
    total: int | None = None,
) -> KnowledgeBase:
  """Runs the frozen teacher over a whole split and collects its embeddings and soft labels.

  Args:
    teacher_fn: batch -> (embedding [b, d], logits [b, C]); typically a jitted teacher forward
      pass followed by the learned projection.
    batches: an ordered iterable of batch dicts with "label" and, for padded eval batches, a
      boolean "mask" (padding is dropped so every example is stored exactly once).
    teacher_id: identity of the teacher, stored in the manifest and checked on load.
    temperature: soft labels are σ(z_t / τ).
    total: number of batches, for the progress bar.
  """
  embeddings, soft_labels, labels = [], [], []
  for batch in tqdm(batches, total=total, desc="knowledge base", unit="batch", leave=False):
    emb, logits = teacher_fn(batch)
    keep = np.asarray(batch.get("mask", np.ones(len(batch["label"]), bool)), bool)
    logits = np.asarray(logits, np.float64) / temperature
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    embeddings.append(np.asarray(emb, np.float32)[keep])
    soft_labels.append(probs.astype(np.float32)[keep])
    labels.append(np.asarray(batch["label"])[keep])
  if not embeddings:
    raise KnowledgeBaseError("no batches were given: the knowledge base would be empty.")
  return KnowledgeBase(
      np.concatenate(embeddings), np.concatenate(soft_labels), np.concatenate(labels), teacher_id
  )


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()


def save_knowledge_base(kb: KnowledgeBase, directory: str, *, overwrite: bool = False) -> str:
  """Writes arrays + manifest into `directory`; refuses to replace an existing base unless asked."""
  manifest_path = os.path.join(directory, MANIFEST_FILE)
  if os.path.exists(manifest_path) and not overwrite:
    raise KnowledgeBaseError(
        f"{directory} already holds a knowledge base; pass overwrite=True " "to replace it."
    )
  os.makedirs(directory, exist_ok=True)
  arrays_path = os.path.join(directory, ARRAYS_FILE)
  # Write to temporary names and rename, so an interrupted save never leaves a half base that
  # a later load would accept.
  save_file(
      {"embeddings": kb.embeddings, "soft_labels": kb.soft_labels, "labels": kb.labels},
      arrays_path + ".tmp",
  )
  os.replace(arrays_path + ".tmp", arrays_path)
  manifest = {
      "format_version": FORMAT_VERSION,
      "count": kb.size,
      "embedding_dim": kb.embedding_dim,
      "num_classes": kb.num_classes,
      "teacher_id": kb.teacher_id,
      "arrays_sha256": _sha256(arrays_path),
  }
  with open(manifest_path + ".tmp", "w") as f:
    json.dump(manifest, f, indent=2)
  os.replace(manifest_path + ".tmp", manifest_path)
  return directory


def load_knowledge_base(
    directory: str,
    *,
    teacher_id: str | None = None,
    embedding_dim: int | None = None,
    num_classes: int | None = None,
) -> KnowledgeBase:
  """Loads a base, verifying its checksum and whatever the caller expects of it.

  Raises:
    KnowledgeBaseError: naming the missing file, the corrupted checksum, or each mismatch
      between the manifest and the expected teacher identity / embedding size / class count.
  """
  manifest_path = os.path.join(directory, MANIFEST_FILE)
  arrays_path = os.path.join(directory, ARRAYS_FILE)
  for path in (manifest_path, arrays_path):
    if not os.path.exists(path):
      raise KnowledgeBaseError(
          f"no knowledge base at {directory}: {os.path.basename(path)} is "
          "missing (build one with build_knowledge_base + save)."
      )
  manifest = _read_manifest(manifest_path)
  if manifest.get("format_version") != FORMAT_VERSION:
    raise KnowledgeBaseError(
        f"{directory}: format_version {manifest.get('format_version')} is "
        f"not supported (this code reads {FORMAT_VERSION})."
    )
  if _sha256(arrays_path) != manifest["arrays_sha256"]:
    raise KnowledgeBaseError(
        f"{arrays_path} does not match the checksum in its manifest: the "
        "file is corrupt or was replaced."
    )
  expected = {"teacher_id": teacher_id, "embedding_dim": embedding_dim, "num_classes": num_classes}
  problems = [
      f"{key} is {manifest[key]!r} but {value!r} was expected"
      for key, value in expected.items()
      if value is not None and manifest[key] != value
  ]
  if problems:
    raise KnowledgeBaseError(
        f"knowledge base at {directory} does not match: " + "; ".join(problems)
    )
  try:
    arrays = load_file(arrays_path)
  except Exception as error:  # pylint: disable=broad-except  (safetensors raises its own types)
    raise KnowledgeBaseError(f"{arrays_path} cannot be read as safetensors: {error}") from error
  missing = sorted({"embeddings", "soft_labels", "labels"} - set(arrays))
  if missing:
    raise KnowledgeBaseError(f"{arrays_path} lacks the array(s) {missing}.")
  found = {
      "count": arrays["embeddings"].shape[0] if arrays["embeddings"].ndim else None,
      "embedding_dim": arrays["embeddings"].shape[-1] if arrays["embeddings"].ndim else None,
      "num_classes": arrays["soft_labels"].shape[-1] if arrays["soft_labels"].ndim else None,
  }
  disagree = [
      f"{key} {manifest[key]} in the manifest vs {value} in the arrays"
      for key, value in found.items()
      if value != manifest[key]
  ]
  if disagree:
    raise KnowledgeBaseError(
        f"{directory}: arrays disagree with the manifest: " + "; ".join(disagree) + "."
    )
  return KnowledgeBase(
      arrays["embeddings"], arrays["soft_labels"], arrays["labels"], manifest["teacher_id"]
  )


_MANIFEST_FIELDS = (
    "format_version",
    "count",
    "embedding_dim",
    "num_classes",
    "teacher_id",
    "arrays_sha256",
)


def _read_manifest(path: str) -> dict:
  """The manifest, or a KnowledgeBaseError naming the path (truncated JSON, missing fields)."""
  try:
    with open(path) as f:
      manifest = json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as error:
    raise KnowledgeBaseError(
        f"{path} is not valid JSON ({error}): the manifest is truncated "
        "or corrupt; rebuild the knowledge base."
    ) from error
  if not isinstance(manifest, dict):
    raise KnowledgeBaseError(f"{path} must hold a JSON object, got {type(manifest).__name__}.")
  missing = [key for key in _MANIFEST_FIELDS if key not in manifest]
  if missing and manifest.get("format_version", FORMAT_VERSION) == FORMAT_VERSION:
    raise KnowledgeBaseError(f"{path} lacks the field(s) {missing}; rebuild the knowledge base.")
  return manifest
