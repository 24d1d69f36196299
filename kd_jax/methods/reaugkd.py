"""ReAugKD: retrieval-augmented knowledge distillation (Zhang, Muhamed, et al., ACL 2023).

PAPERS.md §2. No official code exists; every reconstructed choice below is a hyper-parameter.

Step 1 (`ReAugKD.prepare`, run once per run by the engine before step 0): a linear projection W
on top of the frozen, fine-tuned teacher encoder is trained with the supervised contrastive loss
(same label = positive). The teacher is frozen and text needs no augmentation, so the teacher
embeddings of the train split are computed once and the projection is trained on them
(`train_projection`). The knowledge base (KB) then holds, per training example,
t = W·e_T(x)/‖W·e_T(x)‖, the teacher's soft labels y = σ(z_T/τ_kb) and the label. KB and W are
the run's constants (WORKDIR/constants/, checksummed, reloaded on resume, not checkpointed).

Step 2 (`ReAugKD`): the student is trained with, per example i and anchors j (the other examples
of the batch and/or the KB's k nearest neighbours of t_i), all embeddings L2-normalised,

    q_ij = softmax_j(t_i·t_j / τ_t),   p_ij = softmax_j(s_i·t_j / τ_s),
    L = w_rel·KL(q_i ‖ p_i) + w_ret·KL(y_i ‖ Σ_j p_ij y_j) + w_kd·τ²KL(σ(z_T/τ)‖σ(z_S/τ)) + w_ce·CE,

where s_i is the student embedding in the projected teacher space (the student's own pooled
embedding when its width equals the projection's, or a learned linear map of it).

Inference (`retrieval_augmented_probs`): the student embedding retrieves its top-k KB entries
and p(y|x) = β·Σ_j p_j y_j + (1−β)·σ(z_S(x)); β is chosen on the validation split by the
evaluator `kd_jax.evaluators.RetrievalAugmented` and only then applied to the test split.
"""

from __future__ import annotations

import dataclasses
import json
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax

from kd_jax import retrieval
from kd_jax.losses import contrastive
from kd_jax.losses import logits as logit_losses
from kd_jax.losses import relational
from kd_jax.methods import base

_ANCHORS = ("batch", "retrieved", "both")


# ------------------------------------------------------------------------------------------------
# Step 1: the teacher-side projection and the knowledge base.


def project(projection, teacher_embedding):
  """t = normalise(e_T W + b): the teacher embedding in the KB's space."""
  return relational.l2_normalize(teacher_embedding @ projection["kernel"] + projection["bias"])


def train_projection(
    embeddings: np.ndarray,
    labels: np.ndarray,
    *,
    dim: int,
    temperature: float = 0.1,
    steps: int = 300,
    batch_size: int = 256,
    learning_rate: float = 1e-3,
    seed: int = 0,
) -> dict[str, np.ndarray]:
  """Trains W ∈ R^{D×dim}, b with SupCon on fixed teacher embeddings [N, D] (PAPERS.md §2 step 1).

  Batches are drawn uniformly with replacement from the N examples; W starts as a random
  orthogonal-ish Gaussian map scaled 1/√D (so the initial projection roughly preserves cosines).
  Returns {"kernel": [D, dim], "bias": [dim]} float32.
  """
  embeddings = np.asarray(embeddings, np.float32)
  labels = np.asarray(labels, np.int32)
  if embeddings.ndim != 2 or labels.shape != (embeddings.shape[0],):
    raise ValueError(
        f"train_projection needs embeddings [N, D] and labels [N], got "
        f"{embeddings.shape} and {labels.shape}."
    )
  num, in_dim = embeddings.shape
  key, init_key = jax.random.split(jax.random.key(seed))
  params = {
      "kernel": jax.random.normal(init_key, (in_dim, dim)) / np.sqrt(in_dim),
      "bias": jnp.zeros((dim,)),
  }
  tx = optax.adam(learning_rate)
  data, targets = jnp.asarray(embeddings), jnp.asarray(labels)
  batch = min(batch_size, num)

  def loss_fn(params, index):
    values, valid = contrastive.supervised_contrastive(
        data[index] @ params["kernel"] + params["bias"], targets[index], temperature=temperature
    )
    return jnp.sum(values) / jnp.maximum(jnp.sum(valid), 1)

  @jax.jit
  def run(params, key):
    def step(carry, key):
      params, opt_state = carry
      index = jax.random.randint(key, (batch,), 0, num)
      loss, grads = jax.value_and_grad(loss_fn)(params, index)
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), loss

    (params, _), losses = jax.lax.scan(
        step, (params, tx.init(params)), jax.random.split(key, steps)
    )
    return params, losses

  params, _ = run(params, key)
  return {k: np.asarray(v, np.float32) for k, v in params.items()}


# ------------------------------------------------------------------------------------------------
# Inference.


def retrieval_augmented_probs(
    student_logits,
    student_embedding,
    kb_embeddings,
    kb_soft_labels,
    *,
    k: int,
    temperature: float,
    beta,
):
  """p(y|x) = β·Σ_j p_j y_j + (1−β)·σ(z_S), p_j = softmax_j(s·t_j/τ_s) over the exact top-k.

  `kb_embeddings` must be L2-normalised (they are, from `prepare_knowledge_base`); `beta` may be
  a scalar or a vector [m] (then the result is [m, batch, C]). Usable inside `jit`.
  """
  s = relational.l2_normalize(student_embedding.astype(jnp.float32))
  indices, scores = retrieval.exact_top_k(s, kb_embeddings, k=k)
  return mix_retrieved(
      student_logits, scores, kb_soft_labels[indices], temperature=temperature, beta=beta
  )


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
  """ReAugKD (see the module docstring for the loss). KB and projection are constants.

  Attributes:
    anchors: "batch" (other examples of the batch), "retrieved" (the KB's k nearest neighbours
      of the projected teacher embedding t_i, itself excluded) or "both".
    num_neighbors: k, for training anchors and for inference.
    teacher_temperature, student_temperature: τ_t and τ_s of q and p (and of inference weights).
    relational_weight, retrieval_weight, kd_weight, ce_weight: the four loss weights.
    kd_temperature: τ of the KD term.
    kb_temperature: τ_kb of the soft labels y = σ(z_T/τ_kb), of the batch and of the KB alike.
    student_map: "none" (the student's embedding width must equal the projection's) or
      "linear" (a trainable map from the student's width to the projection's).
    Step 1 (`prepare`): projection_dim, contrastive_temperature, projection_steps,
      projection_batch_size, projection_learning_rate.
  """

  uses_teacher: ClassVar[bool] = True
  outputs: ClassVar[frozenset] = frozenset({"logits", "embedding"})
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
  projection_dim: int = 384
  contrastive_temperature: float = 0.1
  projection_steps: int = 300
  projection_batch_size: int = 256
  projection_learning_rate: float = 1e-3

  def __post_init__(self):
    if self.anchors not in _ANCHORS:
      raise ValueError(f"reaugkd: anchors must be one of {_ANCHORS}, got {self.anchors!r}.")
    if self.student_map not in ("none", "linear"):
      raise ValueError(
          f"reaugkd: student_map must be 'none' or 'linear', got " f"{self.student_map!r}."
      )
    for name in ("num_neighbors", "projection_dim", "projection_steps", "projection_batch_size"):
      if int(getattr(self, name)) < 1:
        raise ValueError(f"reaugkd: {name} must be >= 1, got {getattr(self, name)}.")
    for name in (
        "teacher_temperature",
        "student_temperature",
        "kd_temperature",
        "kb_temperature",
        "contrastive_temperature",
        "projection_learning_rate",
    ):
      if getattr(self, name) <= 0:
        raise ValueError(f"reaugkd: {name} must be positive, got {getattr(self, name)}.")

  @property
  def batch_dependent(self) -> bool:  # in-batch anchors couple the examples of a batch
    return self.anchors in ("batch", "both")

  def prepare(self, ctx):
    """Step 1: teacher pass over the train split, SupCon projection, knowledge base."""

    def teacher_pass(batch):
      out = ctx.teacher_outputs(batch)
      return {
          "embedding": out[0]["embedding"],
          "logits": base.teacher_ensemble_logits(out),
          "label": batch["label"],
      }

    raw = ctx.map_split(teacher_pass, "train", "ReAugKD step 1: teacher pass over train")
    projection = train_projection(
        raw["embedding"],
        raw["label"],
        dim=self.projection_dim,
        temperature=self.contrastive_temperature,
        steps=self.projection_steps,
        batch_size=self.projection_batch_size,
        learning_rate=self.projection_learning_rate,
        seed=ctx.context.seed,
    )
    projected = np.asarray(project(projection, jnp.asarray(raw["embedding"])))
    soft_labels = np.asarray(
        jax.nn.softmax(jnp.asarray(raw["logits"]) / self.kb_temperature, axis=-1)
    )
    # The KnowledgeBase type checks shapes and contents (finite, probabilities, label range).
    kb = retrieval.KnowledgeBase(projected, soft_labels, raw["label"], "prepare")
    if kb.size < self.num_neighbors + 1:
      raise ValueError(
          f"reaugkd: the knowledge base holds {kb.size} entries, fewer than "
          f"num_neighbors + 1 = {self.num_neighbors + 1}."
      )
    return {
        "kb_embeddings": kb.embeddings,
        "kb_soft_labels": kb.soft_labels,
        "kb_labels": kb.labels,
        "projection": projection,
    }

  def init(self, rng, io):
    teacher_dim = io.teachers[0]["embedding"].shape[-1]
    kernel = io.constants["projection"]["kernel"]
    if kernel.shape != (teacher_dim, self.projection_dim):
      raise ValueError(
          f"reaugkd: the projection is {kernel.shape} but the teacher embedding "
          f"has {teacher_dim} dimensions and projection_dim is "
          f"{self.projection_dim}."
      )
    student_dim = io.student["embedding"].shape[-1]
    params = {}
    if self.student_map == "linear":
      params["student_map"] = {
          "kernel": jax.random.normal(rng, (student_dim, self.projection_dim))
          / np.sqrt(student_dim)
      }
    elif student_dim != self.projection_dim:
      raise ValueError(
          f"reaugkd: the student embedding has {student_dim} dimensions but the "
          f"projected teacher space has {self.projection_dim}; set "
          "student_map='linear' or projection_dim to the student's width."
      )
    return base.Variables(params=params)

  def student_embedding(self, params, student_out):
    """s: the student's pooled embedding in the projected teacher space (not yet normalised)."""
    emb = student_out["embedding"].astype(jnp.float32)
    return emb @ params["student_map"]["kernel"] if self.student_map == "linear" else emb

  def _anchors(self, constants, t, soft_labels):
    """Per-example anchor embeddings [b, m, d] and their soft labels [b, m, C]."""
    parts = []
    if self.anchors in ("batch", "both"):
      b = t.shape[0]
      # Row i lists every other example j ≠ i: the anchor itself would make q_ii dominate.
      others = (jnp.arange(b)[:, None] + jnp.arange(1, b)[None, :]) % b
      parts.append((t[others], soft_labels[others]))
    if self.anchors in ("retrieved", "both"):
      # t_i is in the KB (it is a training example), so its own entry is the top hit: drop it.
      kb_embeddings, kb_soft_labels = constants["kb_embeddings"], constants["kb_soft_labels"]
      indices, _ = retrieval.exact_top_k(t, kb_embeddings, k=self.num_neighbors + 1)
      indices = indices[:, 1:]
      parts.append((kb_embeddings[indices], kb_soft_labels[indices]))
    return (
        jnp.concatenate([p[0] for p in parts], axis=1),
        jnp.concatenate([p[1] for p in parts], axis=1),
    )

  def loss(self, params, state, io):
    del state
    teacher_logits = base.teacher_ensemble_logits(io.teachers)
    student_logits = io.student["logits"]
    t = project(io.constants["projection"], io.teachers[0]["embedding"].astype(jnp.float32))
    s = self.student_embedding(params, io.student)
    soft_labels = jax.nn.softmax(teacher_logits / self.kb_temperature, axis=-1)
    anchors, anchor_labels = self._anchors(io.constants, t, soft_labels)
    terms = {}
    terms["relational"] = relational.similarity_kl(
        s,
        anchors,
        t,
        anchors,
        temperature=self.teacher_temperature,
        student_temperature=self.student_temperature,
    )
    p = jax.nn.softmax(
        jnp.einsum("bd,bmd->bm", relational.l2_normalize(s), anchors) / self.student_temperature,
        axis=-1,
    )
    retrieved = jnp.einsum("bm,bmc->bc", p, anchor_labels)
    # KL(y_i ‖ ŷ_i) with the teacher's y_i as the target; ŷ is clipped away from 0 for the log.
    terms["retrieval"] = jnp.sum(
        soft_labels
        * (jnp.log(jnp.maximum(soft_labels, 1e-12)) - jnp.log(jnp.maximum(retrieved, 1e-12))),
        axis=-1,
    )
    terms["kd"] = logit_losses.hinton_kd(
        student_logits, teacher_logits, temperature=self.kd_temperature
    )
    weights = {
        "relational": self.relational_weight,
        "retrieval": self.retrieval_weight,
        "kd": self.kd_weight,
    }
    if self.ce_weight > 0:  # skipped at 0 so that unlabelled transfer data also works
      terms["ce"] = logit_losses.cross_entropy(student_logits, io.batch["label"])
      weights["ce"] = self.ce_weight
    means = {name: jnp.mean(value) for name, value in terms.items()}
    loss = sum(weights[name] * means[name] for name in means)
    return loss, base.Aux(metrics=means)


def method_summary(method: ReAugKD) -> str:
  """One line of the settings, for reports."""
  return json.dumps({f.name: getattr(method, f.name) for f in dataclasses.fields(method)})
