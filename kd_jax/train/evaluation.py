"""The run's evaluators (`config.evals`): built once, run in order, each seeing those before it.

`Evaluations` turns the validated specs into evaluator objects before anything trains (an unknown
kind or option fails at start-up) and runs them: periodically at the steps `due` gives (multiples
of an evaluator's `every`, or `first`, `first + every`, ... when `first` is set — `first: 0`
evaluates the state before the first step), and all of them at the end. Results are written to
the metrics log under each evaluator's name.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from kd_jax.train import config as config_lib
from kd_jax.train import writers


class Evaluations:
  """[(name, split, every, evaluator)] of one run, in run order."""

  def __init__(self, config):
    from kd_jax import evaluators  # pylint: disable=g-import-not-at-top  (import cycle)

    self._evaluators = evaluators
    self.entries = []
    for name, spec in config_lib.evaluation_specs(config):
      options = {k: v for k, v in spec.items() if k not in ("kind", "split", "every", "first")}
      try:
        evaluator = evaluators.get_evaluator(spec["kind"], **options)
      except (TypeError, ValueError) as error:
        raise ValueError(f"evals.{name}: {error}") from error
      self.entries.append((name, spec["split"], (spec["every"], spec.get("first")), evaluator))

  def periodic(self) -> tuple[str, ...]:
    """Names of the evaluators that run during training (`every` or `first` set)."""
    return tuple(name for name, _, (every, first), _ in self.entries if every or first is not None)

  def history(self, workdir: str) -> dict[str, list[dict]]:
    """{name: [{"step", **metrics}, ...]} of the periodic evaluations logged so far in
    WORKDIR/metrics.jsonl (call it before the final evaluations; empty when none ran), so that
    results.json carries the curve a report shows (e.g. validation accuracy per round)."""
    history = {name: {} for name in self.periodic()}
    for row in writers.read_metrics(workdir) if history else ():
      if row["split"] in history:  # by step: a restart before the first checkpoint redoes step 0
        history[row["split"]][row["step"]] = {
            k: v for k, v in row.items() if k not in ("split", "time")
        }
    return {name: [rows[s] for s in sorted(rows)] for name, rows in history.items() if rows}

  def due_at(self, step: int) -> bool:
    """Whether some evaluator is due at `step` (before `run`, e.g. for step 0)."""
    return any(due(step, *period) for _, _, period, _ in self.entries)

  def run(
      self,
      step: int,
      *,
      final: bool,
      batches: Callable[..., Any],
      writer,
      names: Sequence[str] | None = None,
      **shared: Any,
  ) -> dict[str, dict]:
    """{name: results} of the evaluators due at `step` (all of them when `final`; only `names`,
    due or not, when given).

    `batches(split, sharded=...)` gives a fresh pass over a split; `shared` holds the `EvalRun`
    fields common to every evaluator (state, teacher variables, constants, method, ...).
    """
    done: dict[str, dict] = {}
    for name, split, period, evaluator in self.entries:
      if names is not None:
        if name not in names:
          continue
      elif not final and not due(step, *period):
        continue
      run = self._evaluators.EvalRun(
          name=name,
          split=split,
          step=step,
          batches=lambda split=split: batches(split, sharded=True),
          all_batches=lambda split=split: batches(split, sharded=False),
          split_batches=lambda other: batches(other, sharded=False),
          previous=dict(done),
          **shared,
      )
      done[name] = evaluator(run)
      writer.write(step, name, {k: v for k, v in done[name].items() if isinstance(v, (int, float))})
    return done


def due(step: int, every: int, first: int | None) -> bool:
  """Periodic evaluation steps: every, 2·every, ... (never step 0) without `first`; first,
  first + every, ... with it (only `first` when every = 0)."""
  if first is None:
    return bool(every) and step > 0 and step % every == 0
  if step == first:
    return True
  return bool(every) and step > first and (step - first) % every == 0
