"""ReAugKD: retrieval-augmented knowledge distillation (Zhang, Muhamed, et al., ACL 2023).

PAPERS.md §2. No official code exists; every reconstructed choice below is a hyper-parameter.

Step 1 (`train_projection`, `prepare_knowledge_base`): a linear projection W on top of the frozen,
fine-tuned teacher encoder is trained with the supervised contrastive loss (same label =
positive). The teacher is frozen and text needs no augmentation, so the teacher embeddings of the
training split are computed once and the projection is trained on them: exactly the run whose
student is frozen that `methods/base.py` describes, without re-running the encoder every step.
The knowledge base (KB) then stores, per training example, t = W·e_T(x)/‖W·e_T(x)‖, the teacher's
soft labels y = σ(z_T/τ_kb) and the label (`kd_jax.retrieval`).

Step 2 (`ReAugKD`): the student is trained with, per example i and anchors j (the other examples
of the batch and/or the KB's k nearest neighbours of t_i), all embeddings L2-normalised,

    q_ij = softmax_j(t_i·t_j / τ_t),   p_ij = softmax_j(s_i·t_j / τ_s),
    L = w_rel·KL(q_i ‖ p_i) + w_ret·KL(y_i ‖ Σ_j p_ij y_j) + w_kd·τ²KL(σ(z_T/τ)‖σ(z_S/τ)) + w_ce·CE,

where s_i is the student embedding in the projected teacher space (the student's own pooled
embedding when its width equals the projection's, or a learned linear map of it).

Inference (`retrieval_augmented_probs`): the student embedding retrieves its top-k KB entries
and p(y|x) = β·Σ_j p_j y_j + (1−β)·σ(z_S(x)); β is chosen on the validation split
(`eval_betas` reports the accuracy at several β so that the choice is made outside the test).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Callable, ClassVar, Iterable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from safetensors.numpy import load_file, save_file

from kd_jax import metrics
from kd_jax import retrieval
from kd_jax.losses import contrastive
from kd_jax.losses import logits as logit_losses
from kd_jax.losses import relational
from kd_jax.methods import base

PROJECTION_FILE = "projection.safetensors"
_ANCHORS = ("batch", "retrieved", "both")


# ------------------------------------------------------------------------------------------------
# Step 1: the teacher-side projection and the knowledge base.


def project(projection, teacher_embedding):
  """t = normalise(e_T W + b): the teacher embedding in the KB's space."""
  return relational.l2_normalize(teacher_embedding @ projection["kernel"] + projection["bias"])


def train_projection(embeddings: np.ndarray, labels: np.ndarray, *, dim: int,
                     temperature: float = 0.1, steps: int = 300, batch_size: int = 256,
                     learning_rate: float = 1e-3, seed: int = 0) -> dict[str, np.ndarray]:
  """Trains W ∈ R^{D×dim}, b with SupCon on fixed teacher embeddings [N, D] (PAPERS.md §2 step 1).

  Batches are drawn uniformly with replacement from the N examples; W starts as a random
  orthogonal-ish Gaussian map scaled 1/√D (so the initial projection roughly preserves cosines).
  Returns {"kernel": [D, dim], "bias": [dim]} float32.
  """
  embeddings = np.asarray(embeddings, np.float32)
  labels = np.asarray(labels, np.int32)
  if embeddings.ndim != 2 or labels.shape != (embeddings.shape[0],):
    raise ValueError(f"train_projection needs embeddings [N, D] and labels [N], got "
                     f"{embeddings.shape} and {labels.shape}.")
  num, in_dim = embeddings.shape
  key, init_key = jax.random.split(jax.random.key(seed))
  params = {"kernel": jax.random.normal(init_key, (in_dim, dim)) / np.sqrt(in_dim),
            "bias": jnp.zeros((dim,))}
  tx = optax.adam(learning_rate)
  data, targets = jnp.asarray(embeddings), jnp.asarray(labels)
  batch = min(batch_size, num)

  def loss_fn(params, index):
    values, valid = contrastive.supervised_contrastive(
        data[index] @ params["kernel"] + params["bias"], targets[index], temperature=temperature)
    return jnp.sum(values) / jnp.maximum(jnp.sum(valid), 1)

  @jax.jit
  def run(params, key):
    def step(carry, key):
      params, opt_state = carry
      index = jax.random.randint(key, (batch,), 0, num)
      loss, grads = jax.value_and_grad(loss_fn)(params, index)
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), loss
    (params, _), losses = jax.lax.scan(step, (params, tx.init(params)),
                                       jax.random.split(key, steps))
    return params, losses

  params, _ = run(params, key)
  return {k: np.asarray(v, np.float32) for k, v in params.items()}


def save_projection(projection, directory: str, *, teacher_id: str) -> str:
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, PROJECTION_FILE)
  save_file({k: np.asarray(v, np.float32) for k, v in projection.items()}, path + ".tmp",
            metadata={"teacher_id": teacher_id})
  os.replace(path + ".tmp", path)
  return path


def load_projection(directory: str, *, teacher_id: str) -> dict[str, np.ndarray]:
  """The projection saved next to a KB; refused if it belongs to another teacher."""
  from safetensors import safe_open  # pylint: disable=g-import-not-at-top
  path = os.path.join(directory, PROJECTION_FILE)
  if not os.path.exists(path):
    raise retrieval.KnowledgeBaseError(f"{path} is missing: the knowledge base at {directory} "
                                       "was saved without its teacher projection.")
  with safe_open(path, "numpy") as f:
    saved_teacher = (f.metadata() or {}).get("teacher_id")
  if saved_teacher != teacher_id:
    raise retrieval.KnowledgeBaseError(f"{path} was trained for teacher {saved_teacher!r} but the "
                                       f"knowledge base belongs to {teacher_id!r}.")
  return load_file(path)


def prepare_knowledge_base(teacher_fn: Callable, train_batches: Callable[[], Iterable[dict]], *,
                           directory: str, teacher_id: str, projection_dim: int,
                           contrastive_temperature: float = 0.1, projection_steps: int = 300,
                           projection_batch_size: int = 256, projection_learning_rate: float = 1e-3,
                           kb_temperature: float = 1.0, seed: int = 0
                           ) -> retrieval.KnowledgeBase:
  """Step 1 end to end: teacher pass over the train split, SupCon projection, KB saved to disk.

  Args:
    teacher_fn: batch -> (teacher embedding [b, D], teacher logits [b, C]), the frozen teacher.
    train_batches: a factory of ordered, masked batches over the whole train split.
    directory: where the KB (+ manifest) and the projection are written.
  """
  raw = retrieval.build_knowledge_base(teacher_fn, train_batches(), teacher_id=teacher_id,
                                       temperature=kb_temperature)
  projection = train_projection(raw.embeddings, raw.labels, dim=projection_dim,
                                temperature=contrastive_temperature, steps=projection_steps,
                                batch_size=projection_batch_size,
                                learning_rate=projection_learning_rate, seed=seed)
  projected = np.asarray(project(projection, jnp.asarray(raw.embeddings)))
  kb = retrieval.KnowledgeBase(projected, raw.soft_labels, raw.labels, teacher_id)
  retrieval.save_knowledge_base(kb, directory, overwrite=True)
  save_projection(projection, directory, teacher_id=teacher_id)
  return kb


# ------------------------------------------------------------------------------------------------
# Inference.


def retrieval_augmented_probs(student_logits, student_embedding, kb_embeddings, kb_soft_labels,
                              *, k: int, temperature: float, beta):
  """p(y|x) = β·Σ_j p_j y_j + (1−β)·σ(z_S), p_j = softmax_j(s·t_j/τ_s) over the exact top-k.

  `kb_embeddings` must be L2-normalised (they are, from `prepare_knowledge_base`); `beta` may be
  a scalar or a vector [m] (then the result is [m, batch, C]). Usable inside `jit`.
  """
  s = relational.l2_normalize(student_embedding.astype(jnp.float32))
  indices, scores = retrieval.exact_top_k(s, kb_embeddings, k=k)
  return mix_retrieved(student_logits, scores, kb_soft_labels[indices], temperature=temperature,
                       beta=beta)


def mix_retrieved(student_logits, scores, neighbour_soft_labels, *, temperature: float, beta):
  """The mixing step alone, given cosine `scores` [b, k] and neighbour soft labels [b, k, C]
  (so that ScaNN results computed outside `jit` can be mixed the same way)."""
  weights = jax.nn.softmax(scores / temperature, axis=-1)
  retrieved = jnp.einsum("bk,bkc->bc", weights, neighbour_soft_labels)
  own = jax.nn.softmax(student_logits.astype(jnp.float32), axis=-1)
  beta = jnp.asarray(beta, jnp.float32)
  if beta.ndim == 1:
    beta = beta[:, None, None]
  return beta * retrieved + (1.0 - beta) * own


# ------------------------------------------------------------------------------------------------
# Step 2: the method.


@dataclasses.dataclass(frozen=True)
class ReAugKD(base.Method):
  """ReAugKD step 2 (see the module docstring for the loss). The KB and projection are `state`.

  Attributes:
    knowledge_base: directory written by `prepare_knowledge_base` (KB + projection). Relative
      paths are resolved by the caller (experiments/reports/reaugkd.py: against the workdir).
    anchors: "batch" (other examples of the batch), "retrieved" (the KB's k nearest neighbours
      of the projected teacher embedding t_i, itself excluded) or "both".
    num_neighbors: k, for training anchors and for inference.
    teacher_temperature, student_temperature: τ_t and τ_s of q and p (and of inference weights).
    relational_weight, retrieval_weight, kd_weight, ce_weight: the four loss weights.
    kd_temperature: τ of the KD term.
    kb_temperature: τ_kb of the batch's soft labels y_i = σ(z_T/τ_kb); must equal the one the
      KB was built with, so that y_i and the KB's y_j are the same kind of distribution.
    student_map: "none" (the student's embedding width must equal the projection's) or
      "linear" (a trainable map from the student's width to the projection's).
    eval_betas: β values whose retrieval-augmented accuracy `eval_metrics` reports.
    search_backend: inference search in experiments/reports/reaugkd.py: "exact" (`exact_top_k`
      inside the jitted forward pass) or "scann" (approximate, on the host). Training anchors
      and `eval_metrics` always use exact search, which is what runs inside `jit`.
    scann_num_leaves, scann_leaves_to_search, scann_reorder: ScaNN's tree and reorder settings
      (0 leaves: ≈ √N, the usual start; 0 leaves to search: a quarter of the leaves).
    Step-1 settings (used by `prepare_knowledge_base` through the experiment runner):
      projection_dim, contrastive_temperature, projection_steps, projection_batch_size,
      projection_learning_rate.
  """

  uses_teacher: ClassVar[bool] = True
  knowledge_base: str = ""
  anchors: str = "both"
  num_neighbors: int = 16
  teacher_temperature: float = 0.1
  student_temperature: float = 0.1
  relational_weight: float = 1.0
  retrieval_weight: float = 1.0
  kd_weight: float = 1.0
  kd_temperature: float = 2.0
  ce_weight: float = 1.0
  kb_temperature: float = 1.0
  student_map: str = "none"
  eval_betas: tuple = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
  search_backend: str = "exact"
  scann_num_leaves: int = 0
  scann_leaves_to_search: int = 0
  scann_reorder: int = 100
  projection_dim: int = 384
  contrastive_temperature: float = 0.1
  projection_steps: int = 300
  projection_batch_size: int = 256
  projection_learning_rate: float = 1e-3

  def __post_init__(self):
    if self.anchors not in _ANCHORS:
      raise ValueError(f"reaugkd: anchors must be one of {_ANCHORS}, got {self.anchors!r}.")
    if self.search_backend not in ("exact", "scann"):
      raise ValueError(f"reaugkd: search_backend must be 'exact' or 'scann', got "
                       f"{self.search_backend!r}.")
    if self.student_map not in ("none", "linear"):
      raise ValueError(f"reaugkd: student_map must be 'none' or 'linear', got "
                       f"{self.student_map!r}.")
    for name in ("num_neighbors", "projection_dim", "projection_steps", "projection_batch_size"):
      if int(getattr(self, name)) < 1:
        raise ValueError(f"reaugkd: {name} must be >= 1, got {getattr(self, name)}.")
    for name in ("teacher_temperature", "student_temperature", "kd_temperature",
                 "kb_temperature", "contrastive_temperature"):
      if getattr(self, name) <= 0:
        raise ValueError(f"reaugkd: {name} must be positive, got {getattr(self, name)}.")
    if any(not 0.0 <= b <= 1.0 for b in self.eval_betas):
      raise ValueError(f"reaugkd: eval_betas must lie in [0, 1], got {self.eval_betas}.")
    # ConfigDicts hand sequences over as lists; a frozen dataclass needs hashable fields.
    object.__setattr__(self, "eval_betas", tuple(float(b) for b in self.eval_betas))

  def scann_params(self, kb_size: int) -> retrieval.ScannParams:
    leaves = self.scann_num_leaves or max(1, int(round(np.sqrt(kb_size))))
    return retrieval.ScannParams(
        num_leaves=leaves, num_leaves_to_search=self.scann_leaves_to_search or max(1, leaves // 4),
        reorder=self.scann_reorder)

  def load_knowledge_base(self, *, num_classes: int | None = None):
    if not self.knowledge_base:
      raise ValueError("reaugkd: `knowledge_base` is empty; build one with "
                       "kd_jax.methods.reaugkd.prepare_knowledge_base and give its directory.")
    if not os.path.exists(self.knowledge_base):
      raise retrieval.KnowledgeBaseError(
          f"reaugkd: no knowledge base at {self.knowledge_base!r} (manifest.json is missing). "
          "Build it first (step 1): `python -m experiments.reports.reaugkd` does so between the "
          "teacher and ReAugKD stages, or call kd_jax.methods.reaugkd.prepare_knowledge_base.")
    kb = retrieval.load_knowledge_base(self.knowledge_base, embedding_dim=self.projection_dim,
                                       num_classes=num_classes)
    if kb.size < self.num_neighbors + 1:
      raise ValueError(f"reaugkd: the knowledge base holds {kb.size} entries, fewer than "
                       f"num_neighbors + 1 = {self.num_neighbors + 1}.")
    return kb, load_projection(self.knowledge_base, teacher_id=kb.teacher_id)

  def init(self, rng, *, student_out, teacher_out, batch):
    teacher_logits = teacher_out[0]["logits"]
    kb, projection = self.load_knowledge_base(num_classes=teacher_logits.shape[-1])
    teacher_dim = teacher_out[0]["embedding"].shape[-1]
    if projection["kernel"].shape != (teacher_dim, self.projection_dim):
      raise ValueError(f"reaugkd: the saved projection is {projection['kernel'].shape} but the "
                       f"teacher embedding has {teacher_dim} dimensions and projection_dim is "
                       f"{self.projection_dim}.")
    student_dim = student_out["embedding"].shape[-1]
    params = {}
    if self.student_map == "linear":
      params["student_map"] = {"kernel": jax.random.normal(rng, (student_dim, self.projection_dim))
                                         / np.sqrt(student_dim)}
    elif student_dim != self.projection_dim:
      raise ValueError(f"reaugkd: the student embedding has {student_dim} dimensions but the "
                       f"projected teacher space has {self.projection_dim}; set "
                       "student_map='linear' or projection_dim to the student's width.")
    state = {"kb_embeddings": jnp.asarray(kb.embeddings), "kb_soft_labels": jnp.asarray(
        kb.soft_labels), "projection": jax.tree.map(jnp.asarray, projection)}
    return base.Variables(params=params, state=state)

  def student_embedding(self, params, student_out):
    """s: the student's pooled embedding in the projected teacher space (not yet normalised)."""
    emb = student_out["embedding"].astype(jnp.float32)
    return emb @ params["student_map"]["kernel"] if self.student_map == "linear" else emb

  def _anchors(self, state, t, soft_labels):
    """Per-example anchor embeddings [b, m, d] and their soft labels [b, m, C]."""
    parts = []
    if self.anchors in ("batch", "both"):
      b = t.shape[0]
      # Row i lists every other example j ≠ i: the anchor itself would make q_ii dominate.
      others = (jnp.arange(b)[:, None] + jnp.arange(1, b)[None, :]) % b
      parts.append((t[others], soft_labels[others]))
    if self.anchors in ("retrieved", "both"):
      # t_i is in the KB (it is a training example), so its own entry is the top hit: drop it.
      indices, _ = retrieval.exact_top_k(t, state["kb_embeddings"], k=self.num_neighbors + 1)
      indices = indices[:, 1:]
      parts.append((state["kb_embeddings"][indices], state["kb_soft_labels"][indices]))
    return (jnp.concatenate([p[0] for p in parts], axis=1),
            jnp.concatenate([p[1] for p in parts], axis=1))

  def loss(self, params, state, *, student_out, teacher_out, batch, rng, step, apply_student):
    del rng, step, apply_student
    teacher_logits = base.teacher_ensemble_logits(teacher_out)
    student_logits = student_out["logits"]
    t = project(state["projection"], teacher_out[0]["embedding"].astype(jnp.float32))
    s = self.student_embedding(params, student_out)
    soft_labels = jax.nn.softmax(teacher_logits / self.kb_temperature, axis=-1)
    anchors, anchor_labels = self._anchors(state, t, soft_labels)
    terms = {}
    terms["relational"] = relational.similarity_kl(
        s, anchors, t, anchors, temperature=self.teacher_temperature,
        student_temperature=self.student_temperature)
    p = jax.nn.softmax(jnp.einsum("bd,bmd->bm", relational.l2_normalize(s), anchors)
                       / self.student_temperature, axis=-1)
    retrieved = jnp.einsum("bm,bmc->bc", p, anchor_labels)
    # KL(y_i ‖ ŷ_i) with the teacher's y_i as the target; ŷ is clipped away from 0 for the log.
    terms["retrieval"] = jnp.sum(
        soft_labels * (jnp.log(jnp.maximum(soft_labels, 1e-12))
                       - jnp.log(jnp.maximum(retrieved, 1e-12))), axis=-1)
    terms["kd"] = logit_losses.hinton_kd(student_logits, teacher_logits,
                                         temperature=self.kd_temperature)
    weights = {"relational": self.relational_weight, "retrieval": self.retrieval_weight,
               "kd": self.kd_weight}
    if self.ce_weight > 0:  # skipped at 0 so that unlabelled transfer data also works
      terms["ce"] = logit_losses.cross_entropy(student_logits, batch["label"])
      weights["ce"] = self.ce_weight
    means = {name: jnp.mean(value) for name, value in terms.items()}
    loss = sum(weights[name] * means[name] for name in means)
    return loss, base.Aux(metrics=means)

  def eval_metrics(self, params, state, *, student_out, teacher_out, batch):
    out = super().eval_metrics(params, state, student_out=student_out, teacher_out=teacher_out,
                               batch=batch)
    if "label" not in batch:
      return out
    betas = jnp.asarray(self.eval_betas, jnp.float32)
    probs = retrieval_augmented_probs(
        student_out["logits"], self.student_embedding(params, student_out),
        state["kb_embeddings"], state["kb_soft_labels"], k=self.num_neighbors,
        temperature=self.student_temperature, beta=betas)
    for beta, p in zip(self.eval_betas, probs):
      # log p is a valid logit vector for the argmax accuracy.
      out[f"reaug_accuracy_beta{beta:.2f}"] = metrics.accuracy(jnp.log(p + 1e-30), batch["label"])
    return out


def method_summary(method: ReAugKD) -> str:
  """One line of the settings, for reports."""
  return json.dumps({f.name: getattr(method, f.name) for f in dataclasses.fields(method)
                     if f.name != "knowledge_base"})
