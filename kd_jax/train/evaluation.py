"""The run's evaluators (`config.evals`): built once, run in order, each seeing those before it.

`Evaluations` turns the validated specs into evaluator objects before anything trains (an unknown
kind or option fails at start-up) and runs them: periodically when a step is a multiple of an
evaluator's `every`, and all of them at the end. Results are written to the metrics log under
each evaluator's name.
"""

from __future__ import annotations

from typing import Any, Callable

from kd_jax.train import config as config_lib


class Evaluations:
  """[(name, split, every, evaluator)] of one run, in run order."""

  def __init__(self, config):
    from kd_jax import evaluators  # pylint: disable=g-import-not-at-top  (import cycle)

    self._evaluators = evaluators
    self.entries = []
    for name, spec in config_lib.evaluation_specs(config):
      options = {k: v for k, v in spec.items() if k not in ("kind", "split", "every")}
      try:
        evaluator = evaluators.get_evaluator(spec["kind"], **options)
      except (TypeError, ValueError) as error:
        raise ValueError(f"evals.{name}: {error}") from error
      self.entries.append((name, spec["split"], spec["every"], evaluator))

  def run(
      self, step: int, *, final: bool, batches: Callable[..., Any], writer, **shared: Any
  ) -> dict[str, dict]:
    """{name: results} of the evaluators due at `step` (all of them when `final`).

    `batches(split, sharded=...)` gives a fresh pass over a split; `shared` holds the `EvalRun`
    fields common to every evaluator (state, teacher variables, constants, method, ...).
    """
    done: dict[str, dict] = {}
    for name, split, every, evaluator in self.entries:
      if not final and not (every and step % every == 0):
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
