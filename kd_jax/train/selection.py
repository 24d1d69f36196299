"""Model selection on the validation split: the best checkpoint and early stopping.

`config.model_selection` names an evaluator (periodic, `every` > 0, on a split other than the
test split), one of its metrics and a direction. Each time that evaluator runs, a better value
saves the state to WORKDIR/best/ and `patience` evaluations without improvement stop training.
The final evaluations (every evaluator, the test split included) then read the *best* state, so
the choice is made on validation and only applied to test. WORKDIR/best/selection.json records
the best step and value and survives a restart, so a resumed run continues the same selection.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import jax

from kd_jax.train import checkpoint as checkpoint_lib

FILE = "selection.json"


class ModelSelection:
  """Tracks the best evaluation of one metric; saves and restores the best state."""

  def __init__(self, spec, workdir: str, *, async_save: bool):
    self.evaluator, self.metric = spec.evaluator, spec.metric
    self.mode, self.patience = spec.mode, spec.patience
    self.directory = os.path.join(workdir, "best")
    self._checkpointer = checkpoint_lib.Checkpointer(
        self.directory, max_to_keep=1, async_save=async_save
    )
    self.record = {
        "evaluator": self.evaluator,
        "metric": self.metric,
        "mode": self.mode,
        "step": None,
        "value": None,
        "since_best": 0,
        "stopped_early_at": None,
        "evaluated_step": None,
    }
    path = os.path.join(self.directory, FILE)
    if os.path.exists(path):
      with open(path) as f:
        self.record.update(json.load(f))

  def _better(self, value: float) -> bool:
    best = self.record["value"]
    if best is None:
      return True
    return value > best if self.mode == "max" else value < best

  def update(
      self, step: int, evals: dict[str, dict], state: Any, iterator_state: Any, *, last=False
  ) -> bool:
    """Reads this round's evaluations; returns True when training should stop early (never at
    the `last` step: nothing is left to skip).

    A step already evaluated before a resume (the run was killed after an evaluation and before
    its next checkpoint) is skipped: the same state again must not count as "no improvement"."""
    if self.evaluator not in evals:
      return False
    done = self.record.get("evaluated_step")
    if done is not None and step <= done:
      return False
    results = evals[self.evaluator]
    if self.metric not in results:
      raise ValueError(
          f"model_selection.metric {self.metric!r} is not produced by evaluator "
          f"{self.evaluator!r} (it has {sorted(results)})."
      )
    value = float(results[self.metric])
    if not math.isfinite(value):
      raise FloatingPointError(
          f"model_selection: {self.evaluator}.{self.metric} is {value} at " f"step {step}."
      )
    if self._better(value):
      self._checkpointer.save(step, state, iterator_state)
      self._checkpointer.wait()  # the record below must never point at a checkpoint in flight
      self.record.update(step=step, value=value, since_best=0)
    else:
      self.record["since_best"] += 1
    self.record["evaluated_step"] = step
    stop = not last and bool(self.patience) and self.record["since_best"] >= self.patience
    if stop:
      self.record["stopped_early_at"] = step
    self._write()
    return stop

  @property
  def stopped_early(self) -> bool:
    return self.record["stopped_early_at"] is not None

  def _write(self) -> None:
    if jax.process_index() == 0:
      path = os.path.join(self.directory, FILE)
      with open(path + ".tmp", "w") as f:
        json.dump(self.record, f, indent=2)
      os.replace(path + ".tmp", path)

  def best_state(self, like: Any) -> Any:
    """The best state saved so far (`like` fixes structure and placement), or `like` if none."""
    if self.record["step"] is None:
      return like
    restored = self._checkpointer.restore_latest(like)
    if restored is None or restored.step != self.record["step"]:
      raise RuntimeError(
          f"{self.directory} should hold the best checkpoint of step "
          f"{self.record['step']} ({FILE}) but does not; delete {self.directory} "
          "and rerun to select again."
      )
    return restored.state

  def summary(self) -> dict:
    return {k: v for k, v in self.record.items() if k not in ("since_best", "evaluated_step")}

  def close(self) -> None:
    self._checkpointer.close()
