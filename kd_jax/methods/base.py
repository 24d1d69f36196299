"""The interface between the generic trainer and a distillation method (engine v2).

A method is a frozen dataclass of hyper-parameters with a handful of hooks. The trainer
(`kd_jax.train`) owns the student and teacher forward passes, the optax update, sharding,
checkpoints and evaluation; the method owns everything that differs between papers. Every hook
receives one bundle (`StepIO`, `UpdateIO`, `PrepareContext`), so hooks take what they need by name.

  ========================  ========================================================================
  hook / attribute          what it is for
  ========================  ========================================================================
  `uses_teacher`            whether the train step runs the (frozen) teachers at all
  `outputs`                 model outputs the method reads ("logits", "embedding", "features",
                            "attentions"); models compute the others only when asked, so a run
                            that reads no attention maps keeps the fused attention path
  `batch_dependent`         the loss couples the examples of a batch (RKD, SupCon, in-batch
                            anchors): gradient accumulation would change the objective, so the
                            trainer refuses `grad_accum_steps > 1`
  `prepare(ctx)`            once per run, on the host, before step 0: work over whole train /
                            validation splits; returns *constants* (a nested dict of arrays),
                            saved once in WORKDIR/constants/, reloaded on resume, passed to every
                            step as a replicated, non-donated argument, never checkpointed
  `init(rng, io)`           the method's trainable params, non-trainable state and its own
                            modules' mutable collections (`Variables`), seeing real outputs of one
                            *train* batch and the constants
  `optimizer(tx, context)`  how {"student": ..., "method": ...} is updated; `context` gives
                            total_steps, steps_per_epoch, num_train_examples, batch_size
  `training_phases()`,      alternating updates: the trainable parts of each phase and the
  `phase(step, context)`    phase of a step; frozen parts get no gradient and a frozen student
                            no backward pass (`kd_jax.train.phases`)
  `loss(params, state, io)` the scalar objective + `Aux` (metrics, per-example inputs of
                            `update_state`, the method modules' updated mutable collections)
  `update_state(state, io)` non-trainable state after the optimiser step (queues, EMA of the
                            student's params *and* BatchNorm statistics)
  `eval_metrics(params, state, io)`  per-example metrics (the trainer masks padding, averages)
  ========================  ========================================================================

Teacher outputs are wrapped in `stop_gradient` by the trainer, so a method can never train a
teacher; whole-split evaluations (kNN, linear probe, retrieval-augmented inference, downstream
cross-validation) are evaluators in `kd_jax.evaluators`, declared in `config.evals`.

How the methods of PAPERS.md map onto the hooks:

* **ReAugKD** (§2): `prepare` runs the teacher over the train split, trains the SupCon projection
  and returns the knowledge base (projected embeddings, soft labels) as constants; `loss` is the
  relational + retrieval + KD + CE objective; inference with retrieval is an evaluator whose β is
  chosen on the validation split (`reaugkd.py`).
* **SEA** (§1): `prepare` embeds a sample of the target-domain pool with the teacher and fits
  φ = StandardScaler + PCA; constants hold (mean, scale, components); `loss` is the MSE between
  the student embedding and φ(teacher embedding); downstream cross-validation is an evaluator.
* **DiSK** (§4): `init` builds the gate network (own params and BatchNorm statistics in
  `Variables.model_state`, updated in train mode through `Aux.model_state`); `loss` computes λ, δ
  cosine schedules from `io.step` and `io.context.steps_per_epoch`; `optimizer` alternates student
  and gate phases with `optax.transforms.conditionally_mask`.
* **CompRess** (§5): `state` holds the FIFO anchor queues and the momentum encoder (EMA of the
  student's params *and* BatchNorm stats, from `UpdateIO.params` / `UpdateIO.student_model_state`);
  `loss` embeds with the EMA copy through `io.apply_student`; un-augmented teacher features may be
  cached by `prepare`.
* **AMAD** (§3): `outputs = {"logits", "attentions"}`; `loss` aligns the maps of the chosen
  layers; the learnable variant's projection is a `method` param from `init`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar, Iterable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from kd_jax import metrics
from kd_jax.losses import logits as logit_losses

PyTree = Any
Outputs = Mapping[str, Any]  # a model's output dict: "logits", "embedding", "features", ...


@dataclasses.dataclass(frozen=True)
class RunContext:
  """Static facts of the run, for schedules measured in epochs and for `prepare`."""

  total_steps: int
  steps_per_epoch: int
  num_train_examples: int
  batch_size: int
  num_classes: int
  seed: int = 0
  workdir: str = ""

  def epoch(self, step):
    """The (fractional) epoch at optimiser step `step` (works on traced steps too)."""
    return step / self.steps_per_epoch


class Variables(NamedTuple):
  """What a method adds to the train state."""

  params: PyTree = {}  # trainable, updated by the optimiser together with the student
  state: PyTree = {}  # non-trainable, updated by `Method.update_state`
  model_state: PyTree = {}  # mutable collections of the method's own modules (BatchNorm stats)


class Aux(NamedTuple):
  """Side outputs of `Method.loss`.

  metrics: scalar arrays to log (averaged over gradient-accumulation micro-batches).
  state_inputs: per-example arrays (leading batch axis) for `update_state`; with gradient
    accumulation the trainer concatenates the micro-batches back into the full batch.
  model_state: the updated mutable collections of the method's own modules (train mode), with
    the structure of `Variables.model_state`; empty means unchanged.
  """

  metrics: Mapping[str, jax.Array] = {}
  state_inputs: PyTree = {}
  model_state: PyTree = {}


@dataclasses.dataclass(frozen=True)
class StepIO:
  """Everything `init`, `loss` and `eval_metrics` may read.

  student: the student's outputs on `batch` (train mode in `loss`, inference mode otherwise),
    float32. teachers: one output dict per frozen teacher (stop-gradient'ed, float32); empty when
    the method does not use teachers in training. constants: what `prepare` returned.
  inputs: the models' input (`batch[input_key]`, uint8 pixels scaled to [0, 1], in the compute
    dtype), e.g. to run `apply_student` on. step: the optimiser step being computed (int32
    scalar). rng: a key for this step and
    micro-batch (None outside training). apply_student: `(variables, x) -> outputs` in inference
    mode, variables = {"params": ..., **collections} (e.g. an EMA copy kept in `state`).
  model_state: the method modules' mutable collections (`Variables.model_state`).
  student_variables: the student's current {"params": ..., **model_state}.
  train: True inside `loss`.
  trainable: the parts this step differentiates ({"student", "method"}, or one of them in a
    phase of `Method.training_phases`); static, so a method may branch on it in Python. A frozen
    student's outputs are inference-mode and stop-gradient'ed.
  """

  student: Outputs
  teachers: tuple
  batch: Mapping[str, Any]
  context: RunContext
  inputs: Any = None
  constants: PyTree = dataclasses.field(default_factory=dict)
  step: Any = 0
  rng: Any = None
  apply_student: Callable[[PyTree, Any], Outputs] | None = None
  model_state: PyTree = dataclasses.field(default_factory=dict)
  student_variables: PyTree = None
  train: bool = False
  trainable: frozenset = frozenset({"student", "method"})


@dataclasses.dataclass(frozen=True)
class UpdateIO:
  """What `update_state` reads after the optimiser step.

  params: the updated trainable tree {"student": ..., "method": ...}; student_model_state: the
  student's updated mutable collections (BatchNorm statistics); state_inputs: `Aux.state_inputs`
  of the whole batch.
  """

  params: PyTree
  student_model_state: PyTree
  state_inputs: PyTree
  step: Any
  constants: PyTree
  context: RunContext


@dataclasses.dataclass(frozen=True)
class PrepareContext:
  """What `Method.prepare` may use: train / validation data only, never the test split.

  batches(role): ordered batches of the "train" or "validation" split through the run's *eval*
    transforms (no augmentation), with a boolean "mask" on the padding of the last batch.
  map_split(fn, role, description=None): runs `fn(batch) -> dict of per-example arrays` jitted
    over the whole split with a progress bar; returns stacked NumPy arrays without padding.
  teacher_outputs(batch): the frozen teachers' outputs (a tuple of dicts), usable inside `fn`.
  model_input(batch): the model input of a batch (uint8 pixels scaled to [0, 1]).
  """

  context: RunContext
  roles: Mapping[str, str]  # role -> split name, e.g. {"train": "train", "validation": "val"}
  batches: Callable[[str], Iterable[dict]]
  map_split: Callable[..., dict[str, np.ndarray]]
  teacher_outputs: Callable[[Mapping[str, Any]], tuple]
  model_input: Callable[[Mapping[str, Any]], Any]


@dataclasses.dataclass(frozen=True)
class Method:
  """Base class: supervised-style defaults for every hook. Subclasses are frozen dataclasses."""

  uses_teacher: ClassVar[bool] = False
  outputs: ClassVar[frozenset] = frozenset({"logits"})
  teacher_outputs: ClassVar[frozenset | None] = None  # None: the same as `outputs`
  batch_dependent: ClassVar[bool] = False

  def requested_outputs(self) -> tuple[frozenset, frozenset]:
    """(student, teacher) outputs the trainer asks the models for; logits always (eval)."""
    student = frozenset(self.outputs) | {"logits"}
    teacher = frozenset(self.outputs if self.teacher_outputs is None else self.teacher_outputs)
    return student, teacher | {"logits"}

  def has_prepare(self) -> bool:
    return type(self).prepare is not Method.prepare

  def prepare(self, ctx: PrepareContext) -> PyTree:
    """Constants computed once over whole splits (default: none)."""
    del ctx
    return {}

  def init(self, rng: jax.Array, io: StepIO) -> Variables:
    """Extra params, state and module collections, seeing real outputs of one train batch."""
    del rng, io
    return Variables()

  def optimizer(
      self, student_tx: optax.GradientTransformation, context: RunContext
  ) -> optax.GradientTransformation:
    """The transformation of the trainable tree {"student": ..., "method": ...}.

    Default: the configured student optimiser for both parts.
    """
    del context
    return student_tx

  def training_phases(self) -> tuple[frozenset, ...]:
    """The trainable parts ({"student", "method"}) of each training phase; () (default): one
    phase that trains both. Every phase's `loss` must return the same metric names."""
    return ()

  def phase(self, step, context: RunContext):
    """The index into `training_phases()` of optimiser step `step` (a traced int32 in the train
    step, a NumPy array of all steps when the trainer plans schedules)."""
    del context
    return jnp.zeros_like(step)

  def loss(self, params: PyTree, state: PyTree, io: StepIO) -> tuple[jax.Array, Aux]:
    """The training objective of one (micro-)batch, differentiated w.r.t. the student's params
    and `params` (the method's own trainable params); `state` is read-only here."""
    raise NotImplementedError

  def update_state(self, state: PyTree, io: UpdateIO) -> PyTree:
    """Non-trainable state after the optimiser step (default: unchanged)."""
    del io
    return state

  def eval_metrics(self, params: PyTree, state: PyTree, io: StepIO) -> dict[str, jax.Array]:
    """Per-example metrics [batch] on an eval split; the trainer masks padding and averages.

    Default: student accuracy and, when teachers are given, the (ensemble) teacher's accuracy,
    top-1 agreement and predictive KL(p_t ‖ p_s) at τ = 1 (Stanton et al., PAPERS.md §6).
    """
    del params, state
    return classification_metrics(io.student, io.teachers, io.batch)


def classification_metrics(
    student_out: Outputs, teacher_out: Sequence[Outputs], batch: Mapping[str, Any]
) -> dict[str, jax.Array]:
  """Accuracy, and teacher accuracy / agreement / predictive KL when teachers are given."""
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
