"""DiSK: a gate network scaffolds a low-capacity student (Kag et al., ICLR 2023; PAPERS.md §4).

The gate g(x) ∈ (0, 1) sees the frozen teacher's features only and exists in training only. Where
g is large it adds probability mass to the student's prediction on the teacher's plausible classes,
which censors examples the student cannot fit yet; a budget term with a cosine-scheduled δ stops
the gate from helping everywhere, and a cosine-scheduled λ weighs it.

Regimes (`regime`):
  "alternating" (the CIFAR code): `gate_warmup_epochs` epochs updating only the gate, then rounds
    of `student_epochs` epochs updating only the student (gate frozen in inference mode, no
    budget) and `gate_epochs` epochs updating only the gate (student frozen: one inference-mode
    forward pass, no backward pass — `kd_jax.train.phases`).
      student phase:  l_aux·CE(l_S, y) + l_nll·L_DiSK(g) [+ l_kl·τ²KL]
      gate phase:     l_nll·L_DiSK(g) + λ·reg(g, δ) + mean(l_nll·log(1 + K·g))
  "joint" (the ImageNet code): one optimiser updates both every step:
      α·CE(l_S, y) + (1 − α)·L_DiSK(g) + λ·reg(g, δ).
L_DiSK and reg are `kd_jax.losses.disk_loss` / `disk_budget` (the code's form, `objective="code"`)
or `disk_poster_loss` / `disk_poster_budget` (`objective="poster"`).

Schedules take the code's epoch e (in the alternating regime a round of student + gate epochs
counts as one; during the gate warm-up e is the warm-up epoch, as the code passes it):
  λ(e) = λ_min + (λ − λ_min)(1 − cos(π·(e mod T_λ)/T_λ))/2,
  δ(e) = δ_max(e) + (δ_min − δ_max(e))(1 − cos(π·(e mod T_δ)/T_δ))/2,  δ_max(e) = δ_max·γ^⌊e/T_δ⌋
(the code multiplies δ_max by `budget_g_gamma` γ = 0.9 every `budget_Ti` rounds).

The gate's optimiser is the code's: SGD (lr 0.1, momentum 0.9, weight decay 1e-5 — its `r_wd`
default, the CIFAR runner does not set it) with a cosine stepped once per warm-up epoch over the
warm-up, then once per round with warm restarts every `gate_restart_rounds` rounds (the code's
CosineAnnealingWarmRestarts with T_0 = epochs/4 = 50 rounds). The student's rate is the run's
optimiser: the paper recipe sets it to the same per-round cosine (`optimizer.restart_steps`,
`optimizer.hold_steps`, counted in student updates) with weight decay 1e-5, and starts the student
from its CE-trained checkpoint (`config.init_from`); the best round, round 0 included, is chosen
by the engine's model selection on a validation split — the code chose it on the test set.

Not reproduced from the code: the optional dual-variable and primal budget updates (off in its
CIFAR runner), a separate optimiser (fresh momentum) for the gate warm-up, and weight decay on
BatchNorm scales and biases (here kernels only).

`eval_metrics` records the gate per example so that a report can say whom it helps: `gate`,
`gate_wrong` (g where the student is wrong, 0 elsewhere), `gate_hardness` (g·b_i, the budget's
summand) and `delta` (δ of the last update): over a split, mean g on wrong examples is
gate_wrong / (1 − accuracy), on right ones (gate − gate_wrong) / accuracy, and the budget term
before its ReLU is gate_hardness / (1 − accuracy) − δ.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from kd_jax.losses import logits as logit_losses
from kd_jax.losses import scaffold
from kd_jax.methods import base

STUDENT_PHASE, GATE_PHASE = 0, 1


class ScaffoldGate(nn.Module):
  """The code's gate ("b24"): 1×1 → 3×3 → 1×1 convolutions (BatchNorm + SiLU) on a teacher stage
  map, average pool, Linear(feature_width) → Linear(num_classes) → BatchNorm → ReLU → Linear(1) →
  sigmoid. Returns g(x) [batch] in float32."""

  width: int
  feature_width: int
  num_classes: int

  @nn.compact
  def __call__(self, teacher_map, *, train: bool):
    # The gate must see teacher features only; the trainer stop-gradients them already, and this
    # keeps it so for any caller.
    x = jax.lax.stop_gradient(teacher_map).astype(jnp.float32)
    norm = lambda: nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)
    for kernel in (1, 3, 1):
      x = nn.Conv(self.width, (kernel, kernel), padding="SAME", use_bias=False)(x)
      x = nn.silu(norm()(x))
    x = nn.Dense(self.feature_width)(jnp.mean(x, axis=(1, 2)))
    x = nn.relu(norm()(nn.Dense(self.num_classes)(x)))
    return jax.nn.sigmoid(nn.Dense(1)(x))[:, 0]


def cosine_between(start: float, end: float, epoch, period: int):
  """start + (end − start)(1 − cos(π·(e mod T)/T))/2: the code's per-epoch warm-restart cosine."""
  position = jnp.mod(epoch, period) / period
  return start + (end - start) * (1 - jnp.cos(jnp.pi * position)) / 2


@dataclasses.dataclass(frozen=True)
class DiSK(base.Method):
  """Attributes (PAPERS.md §4 names in brackets):
  regime: "alternating" (CIFAR) or "joint" (ImageNet); objective: "code" or "poster".
  teacher_stage: index of the teacher feature map the gate reads (the code: layer 3 = 2).
  gate_width: channels of the gate's convolutions (256).
  student_temperature [τ_s], teacher_temperature [τ_t], top_k [K], max_ce.
  aux_weight [l_aux], nll_weight [l_nll], kd_weight [l_kl], kd_temperature: alternating terms;
  alpha [α]: the joint regime's CE weight.
  lambda_max [λ], lambda_min [λ_min], lambda_period [T_i]: λ schedule (epochs).
  budget_max, budget_min [δ range], budget_period [budget_Ti]: δ schedule (epochs);
  budget_decay [budget_g_gamma]: δ_max is multiplied by it every budget_period epochs (1: never).
  gate_warmup_epochs, student_epochs [kt], gate_epochs [kg]: the alternating schedule.
  log_gate_term: add mean(l_nll·log(1 + K·g)) in gate phases, as the CIFAR code does.
  gate_learning_rate, gate_momentum, gate_weight_decay: the gate's SGD;
  gate_restart_rounds: its cosine restarts every that many rounds (alternating regime).
  """

  uses_teacher: ClassVar[bool] = True
  outputs: ClassVar[frozenset] = frozenset({"logits"})
  teacher_outputs: ClassVar[frozenset] = frozenset({"logits", "features"})

  regime: str = "alternating"
  objective: str = "code"
  teacher_stage: int = 2
  gate_width: int = 256
  student_temperature: float = 3.5
  teacher_temperature: float = 4.0
  top_k: int = 10
  max_ce: float = 5.0
  aux_weight: float = 0.1
  nll_weight: float = 0.9
  kd_weight: float = 0.0
  kd_temperature: float = 4.0
  alpha: float = 0.9
  lambda_max: float = 5.0
  lambda_min: float = 1.0
  lambda_period: int = 50
  budget_max: float = 0.6
  budget_min: float = 0.4
  budget_period: int = 20
  budget_decay: float = 0.9
  gate_warmup_epochs: int = 5
  student_epochs: int = 3
  gate_epochs: int = 3
  log_gate_term: bool = True
  gate_learning_rate: float = 0.1
  gate_momentum: float = 0.9
  gate_weight_decay: float = 1e-5
  gate_restart_rounds: int = 50

  def __post_init__(self):
    if self.regime not in ("alternating", "joint"):
      raise ValueError(f"disk: regime must be 'alternating' or 'joint', got {self.regime!r}.")
    if self.objective not in ("code", "poster"):
      raise ValueError(f"disk: objective must be 'code' or 'poster', got {self.objective!r}.")
    periods = (self.lambda_period, self.budget_period, self.student_epochs, self.gate_epochs)
    if min(*periods, self.gate_restart_rounds) < 1:
      raise ValueError(
          "disk: lambda_period, budget_period, student_epochs, gate_epochs and "
          "gate_restart_rounds must be >= 1."
      )
    if not 0 < self.budget_decay <= 1:
      raise ValueError(f"disk: budget_decay must be in (0, 1], got {self.budget_decay}.")
    if self.gate_warmup_epochs < 0 or self.top_k < 1 or self.gate_width < 1:
      raise ValueError("disk: gate_warmup_epochs >= 0, top_k >= 1 and gate_width >= 1.")
    if min(self.student_temperature, self.teacher_temperature, self.kd_temperature) <= 0:
      raise ValueError("disk: temperatures must be > 0.")
    if not 0 <= self.alpha <= 1:
      raise ValueError(f"disk: alpha must be in [0, 1], got {self.alpha}.")

  # ---- schedule -------------------------------------------------------------------------------

  def training_phases(self):
    if self.regime == "joint":
      return ()
    return (frozenset({"student"}), frozenset({"method"}))

  def _round_steps(self, context):
    return (self.student_epochs + self.gate_epochs) * context.steps_per_epoch

  def phase(self, step, context):
    if self.regime == "joint":
      return jnp.zeros_like(step)
    warmup = self.gate_warmup_epochs * context.steps_per_epoch
    position = jnp.mod(step - warmup, self._round_steps(context))
    in_student = (step >= warmup) & (position < self.student_epochs * context.steps_per_epoch)
    return jnp.where(in_student, STUDENT_PHASE, GATE_PHASE).astype(jnp.int32)

  def schedule_epoch(self, step, context):
    """The code's epoch e of a step, for λ and δ: in the alternating regime the warm-up epoch
    during the warm-up, then the round (a round of student + gate epochs counts once)."""
    if self.regime == "joint":
      return step // context.steps_per_epoch
    warmup = self.gate_warmup_epochs * context.steps_per_epoch
    in_round = jnp.maximum(step - warmup, 0) // self._round_steps(context)
    return jnp.where(step < warmup, step // context.steps_per_epoch, in_round)

  def penalty_weight(self, step, context):
    """λ at optimiser step `step`."""
    epoch = self.schedule_epoch(step, context)
    return cosine_between(self.lambda_min, self.lambda_max, epoch, self.lambda_period)

  def budget(self, step, context):
    """δ at optimiser step `step` (δ_max decayed by γ every budget_period epochs)."""
    epoch = self.schedule_epoch(step, context)
    budget_max = self.budget_max * self.budget_decay ** (epoch // self.budget_period)
    return cosine_between(budget_max, self.budget_min, epoch, self.budget_period)

  # ---- variables and optimiser ----------------------------------------------------------------

  def _teacher_map(self, io):
    features = io.teachers[0]["features"]
    if not -len(features) <= self.teacher_stage < len(features):
      raise ValueError(
          f"disk: teacher_stage={self.teacher_stage} but the teacher has {len(features)} "
          "feature maps."
      )
    return features[self.teacher_stage], features[-1].shape[-1]

  def _gate(self, io):
    teacher_map, feature_width = self._teacher_map(io)
    gate = ScaffoldGate(self.gate_width, feature_width, io.context.num_classes)
    return gate, teacher_map

  def init(self, rng, io):
    gate, teacher_map = self._gate(io)
    variables = gate.init(rng, teacher_map, train=False)
    return base.Variables(
        params={"gate": variables["params"]},
        model_state={"batch_stats": variables["batch_stats"]},
    )

  def gate_learning_rate_at(self, update, context):
    """The gate's rate at its `update`-th update (alternating regime): a cosine stepped per
    warm-up epoch over the warm-up, then per round, restarting every gate_restart_rounds."""
    spe = context.steps_per_epoch
    warmup_updates = self.gate_warmup_epochs * spe
    warmup_epoch = update // spe
    in_warmup = (1 + jnp.cos(jnp.pi * warmup_epoch / max(self.gate_warmup_epochs, 1))) / 2
    round_index = jnp.maximum(update - warmup_updates, 0) // (self.gate_epochs * spe)
    position = jnp.mod(round_index, self.gate_restart_rounds) / self.gate_restart_rounds
    in_rounds = (1 + jnp.cos(jnp.pi * position)) / 2
    return self.gate_learning_rate * jnp.where(update < warmup_updates, in_warmup, in_rounds)

  def _gate_optimizer(self, context):
    if self.regime == "joint":
      schedule = optax.cosine_decay_schedule(self.gate_learning_rate, max(context.total_steps, 1))
    else:
      schedule = lambda update: self.gate_learning_rate_at(update, context)
    kernels = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)
    return optax.chain(
        optax.add_decayed_weights(self.gate_weight_decay, mask=kernels),
        optax.sgd(schedule, momentum=self.gate_momentum or None),
    )

  def optimizer(self, student_tx, context):
    gate_tx = self._gate_optimizer(context)
    if self.regime == "alternating":
      # A frozen part gets a zero gradient; masking also keeps its momentum and weight decay
      # from moving it. The masks count every update call, i.e. the optimiser step.
      student_tx = optax.transforms.conditionally_mask(
          student_tx, lambda step: self.phase(step, context) == STUDENT_PHASE
      )
      gate_tx = optax.transforms.conditionally_mask(
          gate_tx, lambda step: self.phase(step, context) == GATE_PHASE
      )
    labels = lambda params: {part: jax.tree.map(lambda _: part, params[part]) for part in params}
    return optax.multi_transform({"student": student_tx, "method": gate_tx}, labels)

  # ---- objective ------------------------------------------------------------------------------

  def _scaffold_terms(self, student_logits, teacher_logits, gate, labels, delta):
    """(L_DiSK per example, the budget penalty reg) in the chosen objective's form."""
    if self.objective == "poster":
      distill = scaffold.disk_poster_loss(student_logits, teacher_logits, gate)
      reg = scaffold.disk_poster_budget(student_logits, gate, labels, delta=delta)
      return distill, reg
    distill = scaffold.disk_loss(
        student_logits,
        teacher_logits,
        gate,
        labels,
        student_temperature=self.student_temperature,
        teacher_temperature=self.teacher_temperature,
        top_k=self.top_k,
    )
    reg = scaffold.disk_budget(
        student_logits, teacher_logits, gate, labels, delta=delta, max_ce=self.max_ce
    )
    return distill, reg

  def loss(self, params, state, io):
    del state
    gate_module, teacher_map = self._gate(io)
    train_gate = "method" in io.trainable
    variables = {"params": params["gate"], **io.model_state}
    if train_gate:
      gate, new_model_state = gate_module.apply(
          variables, teacher_map, train=True, mutable=["batch_stats"]
      )
    else:  # the code freezes the gate in inference mode during student phases
      gate, new_model_state = gate_module.apply(variables, teacher_map, train=False), {}
    student_logits = io.student["logits"]
    # The raw logits of a single teacher: t̃ mixes l_T/τ_t with min(l_T), which is not invariant
    # to the shift that the ensemble's log-probabilities would apply.
    if len(io.teachers) == 1:
      teacher_logits = io.teachers[0]["logits"]
    else:
      teacher_logits = base.teacher_ensemble_logits(io.teachers)
    labels = io.batch["label"]
    lam = self.penalty_weight(io.step, io.context)
    delta = self.budget(io.step, io.context)
    distill, reg = self._scaffold_terms(student_logits, teacher_logits, gate, labels, delta)
    ce = logit_losses.cross_entropy(student_logits, labels)
    gate_term = jnp.mean(jnp.log1p(self.top_k * gate))
    kd = jnp.zeros(())
    if self.kd_weight > 0:
      kd = jnp.mean(
          logit_losses.hinton_kd(student_logits, teacher_logits, temperature=self.kd_temperature)
      )
    if self.regime == "joint":
      loss = self.alpha * jnp.mean(ce) + (1 - self.alpha) * jnp.mean(distill) + lam * reg
    elif io.trainable == frozenset({"student"}):
      loss = (
          self.aux_weight * jnp.mean(ce) + self.nll_weight * jnp.mean(distill) + self.kd_weight * kd
      )
    else:  # gate phase: the student is frozen, so CE and KD would only add constants
      loss = self.nll_weight * jnp.mean(distill) + lam * reg
      if self.log_gate_term:
        loss = loss + self.nll_weight * gate_term
    metrics = {
        "ce": jnp.mean(ce),
        "disk": jnp.mean(distill),
        "budget_penalty": reg,
        "gate_mean": jnp.mean(gate),
        "lambda": lam,
        "delta": delta,
        "gate_phase": jnp.asarray(train_gate and self.regime == "alternating", jnp.float32),
    }
    return loss, base.Aux(metrics=metrics, model_state=dict(new_model_state))

  def eval_metrics(self, params, state, io):
    """Student accuracy, teacher metrics, and the gate per example: g, g where the student is
    wrong, g·b_i (the budget's summand) and δ of the last update (see the module docstring)."""
    out = base.classification_metrics(io.student, io.teachers, io.batch)
    gate_module, teacher_map = self._gate(io)
    gate = gate_module.apply({"params": params["gate"], **io.model_state}, teacher_map, train=False)
    student_logits, labels = io.student["logits"], io.batch["label"]
    wrong = (jnp.argmax(student_logits, axis=-1) != labels).astype(jnp.float32)
    if self.objective == "poster":
      hardness = logit_losses.cross_entropy(student_logits, labels)
    else:
      teacher_class = jnp.argmax(base.teacher_ensemble_logits(io.teachers), axis=-1)
      hardness = jnp.minimum(logit_losses.cross_entropy(student_logits, teacher_class), self.max_ce)
    last_update = jnp.maximum(io.step - 1, 0)
    out["gate"] = gate
    out["gate_wrong"] = gate * wrong
    out["gate_hardness"] = gate * hardness
    out["delta"] = jnp.broadcast_to(self.budget(last_update, io.context), gate.shape)
    return out
