"""The interface between the generic trainer and a distillation method.

A method is a frozen dataclass of hyper-parameters with a handful of pure hooks. The trainer
(`kd_jax.train.steps`) owns the student forward pass, the frozen teacher forward pass, the optax
update, sharding and checkpointing; the method owns everything that differs between papers:

  ==========================  =================================================================
  hook                        what it is for
  ==========================  =================================================================
  `uses_teacher`              whether the train step runs the (frozen) teachers at all
  `init`                      extra *trainable* params and non-trainable *state* (a `Variables`)
  `optimizer`                 how the trainable tree {"student", "method"} is updated (own
                              optimiser for the method's params, alternating schedules)
  `loss`                      the scalar objective from `kd_jax.losses`, + metrics and whatever
                              `update_state` needs (`Aux.state_inputs`)
  `update_state`              non-trainable state after each optimiser step (queues, EMA, KB)
  `eval_metrics`              per-example evaluation metrics (masked and averaged by the trainer)
  ==========================  =================================================================

Everything the hooks receive is a pytree of arrays (they run inside `jit`); teacher outputs are
already wrapped in `stop_gradient`, so a method can never train the teacher by accident. The
trainer differentiates `loss` with respect to `{"student": student params, "method": params}`.

How the methods of PAPERS.md fit without trainer changes:

* **Vanilla KD / ensembles** (§0, §6): no extra params or state; `loss` combines `cross_entropy`
  and `hinton_kd` on `ensemble_logits` of the member logits (`vanilla_kd.py`).
* **FitNets**: `init` creates the adapter (a `nn.Dense`/1×1 conv) params from the student and
  teacher feature shapes it is shown; `loss` applies the adapter to `student_out["features"][i]`
  and regresses `teacher_out[0]["features"][j]`. The adapter trains with the student (default
  `optimizer`) — or, for two-stage FitNets, `optimizer` masks the student during the hint stage
  with `optax.transforms.conditionally_mask` on the step count.
* **DiSK** (§4): `init` creates the gate network params; `loss` evaluates the gate on teacher
  features (a `stop_gradient` input, so only the gate's params get gradients) and returns the
  DiSK objective + budget penalty, with λ and δ cosine schedules computed from `step`.
  `optimizer` returns `optax.multi_transform({"student": sgd, "method": gate_sgd})` where each
  branch is wrapped in `conditionally_mask(..., should_transform_fn=phase)` so that the student
  and gate alternate (3 passes each per epoch) — the trainer only sees one transformation.
* **CompRess** (§5): `state` holds the teacher (and student, for 2q) anchor queues, a queue
  pointer and, for the momentum variant, the EMA copy of the student params; `loss` uses the
  `apply_student` callable to embed the batch with the EMA params, compares similarities with the
  relational KL from `kd_jax.losses.relational`, and returns the new embeddings in
  `Aux.state_inputs`; `update_state` enqueues them (FIFO, `lax.dynamic_update_slice`) and does
  the EMA step `ξ ← mξ + (1−m)θ` using the freshly updated `params["student"]`. 1q adds a linear
  map to `init`'s params. Teacher features may be cached as `state` for un-augmented data.
* **ReAugKD** (§2): step 1 is a run whose student is frozen by `optimizer` (zero updates) and
  whose `method` params are the teacher projection, trained with supervised contrastive loss;
  step 2 keeps the knowledge base (projected teacher embeddings + soft labels) as `state`, built
  in `init` from the previous run's export or filled batch by batch in `update_state`; `loss` is
  the relational KL + retrieved soft-label KL + KD + CE; `eval_metrics` adds the retrieval-
  augmented accuracy `β·ŷ + (1−β)·σ(z_s)` next to the student's own.
* **SEA** (§1): the student has no classifier head; φ (StandardScaler + PCA fitted on teacher
  embeddings of a target-domain sample) is fitted before training and held as non-trainable
  `state` (mean, scale, components); `loss` is the MSE between `student_out["embedding"]` and
  φ(`teacher_out[0]["embedding"]`); `eval_metrics` reports the validation MSE (no "logits", so
  the default accuracy is skipped).
* **AMAD** (§3): `loss` reads `student_out["attentions"]` and `teacher_out[0]["attentions"]`;
  variant 3's learnable map is a `method` param created in `init`.

Evaluations that need a whole split at once rather than per-example values (CompRess's linear
probe and 1-NN over all train embeddings, SEA's downstream classifiers) are separate runs or
stages that load the trained student's checkpoint, not part of this per-step interface.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

from kd_jax import metrics
from kd_jax.losses import logits as logit_losses

PyTree = Any
Outputs = Mapping[str, Any]  # a model's output dict: "logits", "embedding", "features", ...


class Variables(NamedTuple):
  """What a method adds to the train state."""
  params: PyTree = {}   # trainable, updated by the optimiser together with the student
  state: PyTree = {}    # non-trainable, updated by `Method.update_state`


class Aux(NamedTuple):
  """Side outputs of `Method.loss`.

  metrics: scalar arrays to log (averaged over gradient-accumulation micro-batches).
  state_inputs: per-example arrays (leading batch axis) for `update_state`; with gradient
    accumulation the trainer concatenates the micro-batches back into the full batch.
  """
  metrics: Mapping[str, jax.Array] = {}
  state_inputs: PyTree = {}


@dataclasses.dataclass(frozen=True)
class Method:
  """Base class: supervised-style defaults for every hook. Subclasses are frozen dataclasses."""

  uses_teacher: ClassVar[bool] = False

  def init(self, rng: jax.Array, *, student_out: Outputs, teacher_out: Sequence[Outputs],
           batch: Mapping[str, Any]) -> Variables:
    """Creates extra params and state, seeing one batch of real outputs (for shapes)."""
    del rng, student_out, teacher_out, batch
    return Variables(params={}, state={})

  def optimizer(self, student_tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """The transformation for the trainable tree {"student": ..., "method": ...}.

    Default: the configured student optimiser for both parts.
    """
    return student_tx

  def loss(self, params: PyTree, state: PyTree, *, student_out: Outputs,
           teacher_out: Sequence[Outputs], batch: Mapping[str, Any], rng: jax.Array,
           step: jax.Array, apply_student: Callable[[PyTree, jax.Array], Outputs]
           ) -> tuple[jax.Array, Aux]:
    """The training objective of one (micro-)batch, differentiated w.r.t. the student's params
    and `params`.

    Args:
      params: the method's trainable params (`Variables.params`).
      state: the method's non-trainable state, read-only here.
      student_out: the student's train-mode outputs on `batch` (float32).
      teacher_out: one output dict per frozen teacher (stop-gradient'ed, float32); empty when
        `uses_teacher` is False.
      batch: the (micro-)batch, including "label" when the data has labels.
      rng: a key for this step (dropout, sampling), different every step and micro-batch.
      step: the optimiser step being computed (int32 scalar), for schedules.
      apply_student: `(student_params, x) -> outputs` in inference mode, e.g. for an EMA copy of
        the student kept in `state`.
    Returns:
      (scalar loss, Aux).
    """
    raise NotImplementedError

  def update_state(self, state: PyTree, *, params: PyTree, state_inputs: PyTree,
                   step: jax.Array) -> PyTree:
    """Non-trainable state after the optimiser step. `params` is the updated trainable tree."""
    del params, state_inputs, step
    return state

  def eval_metrics(self, params: PyTree, state: PyTree, *, student_out: Outputs,
                   teacher_out: Sequence[Outputs], batch: Mapping[str, Any]
                   ) -> dict[str, jax.Array]:
    """Per-example metrics [batch] on the eval split; the trainer masks padding and averages.

    Default: student accuracy and, when teachers are given, the (ensemble) teacher's accuracy,
    top-1 agreement and predictive KL(p_t ‖ p_s) at τ = 1 (Stanton et al., PAPERS.md §6).
    """
    del params, state
    out = {}
    if student_out.get("logits") is None:  # headless encoders (SEA, CompRess students)
      return out
    student_logits = student_out["logits"]
    if "label" in batch:
      out["accuracy"] = metrics.accuracy(student_logits, batch["label"])
    if teacher_out:
      teacher_logits = teacher_ensemble_logits(teacher_out)
      if "label" in batch:
        out["teacher_accuracy"] = metrics.accuracy(teacher_logits, batch["label"])
      out["agreement"] = metrics.top_k_agreement(student_logits, teacher_logits, k=1)
      out["predictive_kl"] = metrics.predictive_kl(teacher_logits, student_logits)
    return out


def teacher_ensemble_logits(teacher_out: Sequence[Outputs]) -> jax.Array:
  """z_t = log((1/m) Σ_i σ(z_i)) over the teacher members (member axis first).

  With one member this is log σ(z_1), which has the same softmax as z_1 at any temperature
  ratio of 1 — and for τ ≠ 1, σ(log σ(z)/τ) = σ(z/τ) too, since log σ(z) = z − logsumexp(z).
  """
  if not teacher_out:
    raise ValueError("teacher_ensemble_logits needs at least one teacher output.")
  member_logits = jnp.stack([out["logits"] for out in teacher_out], axis=0)
  return logit_losses.ensemble_logits(member_logits)
