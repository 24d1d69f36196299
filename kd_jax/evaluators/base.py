"""What an evaluator sees, and the per-example metrics evaluator every run has.

An evaluator is a small class built once per run from its config entry (`config.evals[name]`
minus `kind`, `split` and `every`) and called with an `EvalRun` after training (and every
`every` steps when that is set); it returns a flat dict of numbers, written to the metrics log
under the evaluator's name and to results.json. Evaluators run in the order they are declared,
and each sees the results of those before it in `run.previous`: that is how a choice made on the
validation split (ReAugKD's β, a threshold) is applied to the test split afterwards, never the
other way round.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterable, Mapping

import jax

from kd_jax.methods import base
from kd_jax.train import mesh as mesh_lib

PyTree = Any


@dataclasses.dataclass
class EvalRun:
  """One evaluation of one split.

  batches(): this host's shard of the split, ordered, padded, with a boolean "mask" — for
    per-example metrics on the mesh. all_batches(): the whole split on every host — for
    whole-split evaluators (kNN, probes, retrieval), which compute the same result everywhere.
  split_batches(split): the same for another split of the run's dataset (a probe's train and
    validation splits, a kNN database), through the eval transforms.
  eval_step: the run's jitted per-example metrics step (compiled once per run).
  forward: the student / teacher forward passes (`kd_jax.train.forward.Forward`).
  """

  name: str
  split: str
  step: int
  batches: Callable[[], Iterable[dict]]
  all_batches: Callable[[], Iterable[dict]]
  split_batches: Callable[[str], Iterable[dict]]
  state: Any
  teacher_variables: PyTree
  constants: PyTree
  method: base.Method
  forward: Any
  context: base.RunContext
  input_key: str
  mesh: Any
  eval_step: Callable
  previous: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)

  def student_variables(self) -> dict:
    return {"params": self.state.params["student"], **self.state.model_state}

  def result_of(self, evaluator: str, key: str, *, wanted_by: str):
    """A number an earlier evaluator of this round produced (clear error when it did not)."""
    if evaluator not in self.previous:
      raise ValueError(
          f"evaluator {self.name!r} needs {key!r} from evaluator {evaluator!r}, "
          f"which must be declared before it in config.evals (ran so far: "
          f"{sorted(self.previous)}). ({wanted_by})"
      )
    if key not in self.previous[evaluator]:
      raise ValueError(
          f"evaluator {evaluator!r} produced no {key!r} (it has "
          f"{sorted(self.previous[evaluator])}); {wanted_by}"
      )
    return self.previous[evaluator][key]


@dataclasses.dataclass(frozen=True)
class PerExampleMetrics:
  """`Method.eval_metrics` averaged over the split, padding masked (kind "metrics")."""

  def __call__(self, run: EvalRun) -> dict[str, float]:
    totals: dict[str, float] = {}
    for batch in run.batches():
      sums = jax.device_get(
          run.eval_step(
              run.state, run.teacher_variables, run.constants, mesh_lib.shard_batch(batch, run.mesh)
          )
      )
      for name, value in sums.items():
        totals[name] = totals.get(name, 0.0) + float(value)
    count = totals.pop("count", 0.0)
    if count == 0:
      raise ValueError(f"evaluator {run.name!r}: split {run.split!r} produced no examples.")
    return {name: value / count for name, value in totals.items()}
