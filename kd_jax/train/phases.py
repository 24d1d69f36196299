"""Training phases: methods that train the student and their own params in alternation (DiSK).

`Method.training_phases()` lists the trainable parts {"student", "method"} of each phase and
`Method.phase(step, context)` says which phase an optimiser step is in. The train step compiles one
branch per phase (`lax.switch`, so a step runs only its own branch): a part outside the phase is
frozen — no gradient is computed for it, and a frozen student runs one inference-mode forward pass
(no backward pass, BatchNorm statistics unchanged), as DiSK's gate phases do (`model.eval()` under
`no_grad` in the official code).

The method's `optimizer` must leave frozen parts untouched (e.g. `optax.transforms.
conditionally_mask` per part), since a zero gradient still moves a momentum or weight-decay
update. The student's learning-rate schedule spans only the steps that update it, so a cosine
schedule ends at its final rate however the phases divide the run.
"""

from __future__ import annotations

import numpy as np

from kd_jax.methods import base

ALL_PARTS = frozenset({"student", "method"})


def phase_parts(method: base.Method) -> tuple[frozenset, ...]:
  """The method's phases, checked: each a non-empty subset of {"student", "method"}."""
  phases = tuple(frozenset(parts) for parts in method.training_phases())
  for index, parts in enumerate(phases):
    if not parts or not parts <= ALL_PARTS:
      raise ValueError(
          f"{type(method).__name__}.training_phases()[{index}] is {sorted(parts)}; each phase "
          f"must be a non-empty subset of {sorted(ALL_PARTS)}."
      )
  return phases


def phase_of_steps(method: base.Method, context: base.RunContext) -> np.ndarray:
  """The phase index of every optimiser step 0 … total_steps − 1 (host-side, for schedules)."""
  phases = phase_parts(method)
  steps = np.arange(context.total_steps)
  if not phases:
    return np.zeros_like(steps)
  index = np.asarray(method.phase(steps, context)).astype(np.int64)
  if index.shape != steps.shape or index.min(initial=0) < 0 or index.max(initial=0) >= len(phases):
    raise ValueError(
        f"{type(method).__name__}.phase(step, context) must give an index in [0, {len(phases)}) "
        "for every step."
    )
  return index


def steps_training(method: base.Method, phase_of_step: np.ndarray, part: str) -> np.ndarray:
  """Boolean like `phase_of_step` (from `phase_of_steps`): whether each step updates `part`
  ("student" or "method")."""
  phases = phase_parts(method)
  if not phases:
    return np.ones(phase_of_step.shape, bool)
  return np.array([part in parts for parts in phases])[phase_of_step]


def schedule_positions(trains: np.ndarray) -> np.ndarray:
  """For each step, how many earlier steps updated the part (`trains` from `steps_training`):
  the argument of its learning-rate schedule at that step (the step itself with one phase)."""
  return np.cumsum(trains) - trains
