"""CompRess: self-supervised learning by compressing representations (Koohpayegani, Tejankar,
Pirsiavash; NeurIPS 2020, arXiv 2010.14713). PAPERS.md §5; official code UMBCvision/CompRess.

The student mimics the teacher's *similarities* to a bank of anchors rather than the teacher's
embedding itself. With L2-normalised embeddings t_i (teacher), s_i (student), anchor banks
{a^T_j} and {a^S_j} (FIFO queues of K past embeddings) and one temperature τ for both sides,

    p^T_i(j) = softmax_j(t_i·a^T_j / τ),   p^S_i(j) = softmax_j(s_i·a^S_j / τ),
    L = (1/N) Σ_i KL(p^T_i ‖ p^S_i)                      (`kd_jax.losses.similarity_kl`).

Variants (`variant`):
  "2q"           separate banks; a^S holds embeddings of a momentum (EMA, m = 0.999) copy of the
                 student. The EMA covers the params *and* the BatchNorm statistics and lives in
                 the method state; it embeds the batch through `io.apply_student` (inference
                 mode). The official code instead runs the key encoder's BatchNorm in train mode
                 on the current batch and averages only the params; `apply_student` is
                 inference-mode, so the running statistics are averaged as well.
  "no_momentum"  separate banks; a^S holds the student's own embeddings (stop-gradient).
  "1q"           one teacher bank; a learned linear map W (a method param, d_s → d_t, with bias)
                 takes the student into the teacher's space: p^S_i(j) = softmax_j(n(W s_i)·a^T_j/τ).
                 The evaluators read the student's own embedding (before W), as the official
                 evaluation drops the student's final linear layer.

Queues (method state, checkpointed, so a resumed run continues with the very same anchors):
K = `queue_size` rows per bank, independent of the dataset size, and one int32 `pointer`. The
banks are read by `loss` and written by `update_state` after the optimiser step, so a batch is
compared against the anchors of earlier batches only, as in the official code, where the batch
is enqueued after its similarities are computed. Rows (p + i) mod K receive the batch's rows
i = 0..b−1 (`enqueue`, two `lax.dynamic_update_slice` writes of b rows, so a step touches O(b·d)
memory, never the whole bank); the similarities cost O(b·K) memory.

Before the bank is full: as in the official code, every bank starts filled with random vectors
(uniform in ±√(3/d), which the official code leaves unnormalised; here they are L2-normalised so
that every anchor is a unit vector) that the first ⌈K/b⌉ steps overwrite; no masking of unfilled
rows. The teacher and student banks are drawn independently, as there: until the first K rows
are replaced, part of the anchors carry no shared structure between the two sides.

The momentum copy starts equal to the student (the official `moment_update(student, key, 0)`)
and is updated after every optimiser step: e ← m·e + (1 − m)·θ; the loss of step t uses the copy
after step t − 1, which is the official order (update after the step, key computed at the next).

Momentum sized to the run (`momentum_horizon`): after t updates the copy still holds m^t of the
random weights it started from. The paper's m = 0.999 over its ~650 k steps leaves 1 % of them
after 4 603 steps (0.7 % of the run); over a run of a few hundred steps the same m leaves most of
the random start in the key encoder to the end. With `momentum_horizon` = f > 0 the momentum is

    m_run = min(m, 0.01^(1 / (f·T)))          (T = the run's optimiser steps),

so the random start's share falls to at most 1 % after a fraction f of the run (and to m_run^T
at its end); runs long enough for m keep m (`run_momentum`; `random_start_share` gives m^t).
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from kd_jax.losses import relational
from kd_jax.methods import base

_VARIANTS = ("1q", "2q", "no_momentum")


# ------------------------------------------------------------------------------------------------
# FIFO queues (shared with the CRD baseline).


def random_queue(rng, size: int, dim: int):
  """[size, dim] unit rows: uniform in ±√(3/dim) (the official init), then L2-normalised."""
  bound = math.sqrt(3.0 / dim)
  rows = jax.random.uniform(rng, (size, dim), jnp.float32, -bound, bound)
  return relational.l2_normalize(rows)


def enqueue(queue, pointer, rows):
  """Writes `rows` [b, d] into rows (pointer + i) mod K of `queue` [K, d] (b ≤ K).

  With o = max(0, pointer + b − K) rows overflowing the end and r = roll(rows, o): position j of
  the b-row window starting at min(pointer, K − b) takes r_j for j ≥ o (the rows before the
  wrap), position j of the first b rows takes r_j for j < o (the wrapped rows), and every other
  position of both windows keeps its value. Both writes are `lax.dynamic_update_slice`s of b
  rows, which XLA performs in place on the donated train state: a step moves O(b·d) memory.
  """
  size, batch = queue.shape[0], rows.shape[0]
  if batch > size:
    raise ValueError(f"a queue of {size} rows cannot take a batch of {batch}; raise queue_size.")
  rows = rows.astype(queue.dtype)
  overflow = jnp.maximum(pointer + batch - size, 0)
  rolled = jnp.roll(rows, overflow, axis=0)
  index = jnp.arange(batch)[:, None]
  start = pointer - overflow  # = min(pointer, K − b)
  zero = jnp.zeros((), start.dtype)
  window = jax.lax.dynamic_slice_in_dim(queue, start, batch)
  queue = jax.lax.dynamic_update_slice(
      queue, jnp.where(index >= overflow, rolled, window), (start, zero)
  )
  head = queue[:batch]  # read after the first write: with K < 2b the two windows overlap
  return jax.lax.dynamic_update_slice(
      queue, jnp.where(index < overflow, rolled, head), (zero, zero)
  )


def advance(pointer, batch: int, size: int):
  """The pointer after enqueuing `batch` rows into a queue of `size` rows (wraps around)."""
  return ((pointer + batch) % size).astype(jnp.int32)


def ema(average, current, momentum: float):
  """e ← m·e + (1 − m)·x over a pytree (params and BatchNorm statistics alike); non-float leaves
  (e.g. a step counter in a collection) are copied from `current`."""

  def update(e, x):
    if not jnp.issubdtype(jnp.asarray(e).dtype, jnp.floating):
      return x
    return (momentum * e + (1.0 - momentum) * x.astype(e.dtype)).astype(e.dtype)

  return jax.tree.map(update, average, current)


def run_momentum(momentum: float, horizon: float, total_steps: int) -> float:
  """m_run = min(m, 0.01^(1/(f·T))) of the module docstring (m itself when f = 0 or T = 0)."""
  if horizon <= 0 or total_steps <= 0:
    return float(momentum)
  return min(float(momentum), 0.01 ** (1.0 / (horizon * total_steps)))


def random_start_share(momentum: float, steps: int) -> float:
  """m^t: the share of its random initial weights the momentum copy holds after t updates."""
  return float(momentum) ** int(steps)


def queue_fill_step(queue_size: int, batch_size: int) -> int:
  """⌈K/b⌉: the step after which no random anchor is left in a bank of K rows."""
  return -(-int(queue_size) // int(batch_size))


# ------------------------------------------------------------------------------------------------
# The method.


@dataclasses.dataclass(frozen=True)
class CompRess(base.Method):
  """CompRess (see the module docstring for the loss, the variants and the queues).

  Attributes:
    variant: "2q" (teacher bank + momentum-student bank), "no_momentum" (teacher bank + the
      student's own embeddings) or "1q" (teacher bank only, student through a linear map).
    queue_size: K, the rows of each bank (paper: 128 000; must be ≥ the global batch size).
    temperature: τ of both softmaxes (paper: 0.04).
    momentum: m of the momentum student ("2q"; paper: 0.999).
    momentum_horizon: f in (0, 1]: lower m (never raise it) so that the momentum student holds
      at most 1 % of its random start after a fraction f of the run; 0 keeps m as given.
    teacher: index of the teacher (in `config.teachers`) whose embedding is distilled.
  """

  uses_teacher: ClassVar[bool] = True
  outputs: ClassVar[frozenset] = frozenset({"embedding"})
  variant: str = "2q"
  queue_size: int = 128_000
  temperature: float = 0.04
  momentum: float = 0.999
  momentum_horizon: float = 0.0
  teacher: int = 0

  def __post_init__(self):
    if self.variant not in _VARIANTS:
      raise ValueError(f"compress: variant must be one of {_VARIANTS}, got {self.variant!r}.")
    if int(self.queue_size) < 1:
      raise ValueError(f"compress: queue_size must be >= 1, got {self.queue_size}.")
    if self.temperature <= 0:
      raise ValueError(f"compress: temperature must be positive, got {self.temperature}.")
    if not 0.0 <= self.momentum < 1.0:
      raise ValueError(f"compress: momentum must be in [0, 1), got {self.momentum}.")
    if not 0.0 <= self.momentum_horizon <= 1.0:
      raise ValueError(
          f"compress: momentum_horizon is a fraction of the run in [0, 1] (0: off), got "
          f"{self.momentum_horizon}."
      )

  def _teacher_embedding(self, io):
    if not 0 <= self.teacher < len(io.teachers):
      raise ValueError(
          f"compress: teacher={self.teacher} but the run has {len(io.teachers)} teacher(s)."
      )
    return io.teachers[self.teacher]["embedding"].astype(jnp.float32)

  def init(self, rng, io):
    teacher_dim = self._teacher_embedding(io).shape[-1]
    student_dim = io.student["embedding"].shape[-1]
    if io.context.batch_size > self.queue_size:
      raise ValueError(
          f"compress: queue_size={self.queue_size} is smaller than the batch size "
          f"{io.context.batch_size}; every step enqueues a whole batch."
      )
    teacher_key, student_key, map_key = jax.random.split(rng, 3)
    state = {
        "teacher_queue": random_queue(teacher_key, self.queue_size, teacher_dim),
        "pointer": jnp.zeros((), jnp.int32),
    }
    params = {}
    if self.variant == "1q":
      params["map"] = {  # PyTorch's nn.Linear scale; only the direction of W·s matters here
          "kernel": jax.random.normal(map_key, (student_dim, teacher_dim)) / np.sqrt(student_dim),
          "bias": jnp.zeros((teacher_dim,)),
      }
    else:
      state["student_queue"] = random_queue(student_key, self.queue_size, student_dim)
    if self.variant == "2q":
      # Copied by the trainer (`jnp.array(copy=True)`): the EMA must not alias the student.
      state["ema"] = jax.tree.map(jnp.asarray, dict(io.student_variables))
    return base.Variables(params=params, state=state)

  def student_embedding(self, params, student_out):
    """s (or W·s + b for "1q"), not normalised: the student's side of the similarities."""
    s = student_out["embedding"].astype(jnp.float32)
    if self.variant == "1q":
      s = s @ params["map"]["kernel"] + params["map"]["bias"]
    return s

  def loss(self, params, state, io):
    t = self._teacher_embedding(io)
    s = self.student_embedding(params, io.student)
    state_inputs = {"teacher": relational.l2_normalize(t)}
    if self.variant == "1q":
      student_anchors = state["teacher_queue"]
    else:
      student_anchors = state["student_queue"]
      if self.variant == "2q":
        key = io.apply_student(state["ema"], io.inputs)["embedding"].astype(jnp.float32)
      else:
        key = s
      state_inputs["student"] = jax.lax.stop_gradient(relational.l2_normalize(key))
    kl = relational.similarity_kl(
        s, student_anchors, t, state["teacher_queue"], temperature=self.temperature
    )
    loss = jnp.mean(kl)
    return loss, base.Aux(metrics={"compress_kl": loss}, state_inputs=state_inputs)

  def update_state(self, state, io):
    rows = io.state_inputs
    pointer = state["pointer"]
    new = dict(state)
    new["teacher_queue"] = enqueue(state["teacher_queue"], pointer, rows["teacher"])
    if "student_queue" in state:
      new["student_queue"] = enqueue(state["student_queue"], pointer, rows["student"])
    new["pointer"] = advance(pointer, rows["teacher"].shape[0], self.queue_size)
    if self.variant == "2q":
      current = {"params": io.params["student"], **io.student_model_state}
      momentum = run_momentum(self.momentum, self.momentum_horizon, io.context.total_steps)
      new["ema"] = ema(state["ema"], current, momentum)
    return new
