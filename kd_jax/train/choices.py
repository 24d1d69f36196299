"""Hyper-parameters chosen on a validation split, inside one staged command.

A staged config may hold `choices = {stage: {"candidates": (stage, ...), "evaluator": name,
"metric": name, "mode": "max" | "min"}}`: before `stage` runs, the finished candidate stages are
compared on `results["evals"][evaluator][metric]` (an evaluator on a validation split — choosing
on the eval split is refused) and `stage` takes the winner's `method` config. Typically the
candidates are seed-0 runs of a small grid and the chosen stages the other seeds, so the grid
costs one run per setting. The comparison is written to WORKDIR/<stage>/choice.json; on resume
the same finished results give the same choice. A candidate whose score is not finite (a
diverged run) never wins, and choice.json is written only after the stage's own checks (its
config, and on resume the config it was started with) have passed.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, NamedTuple

KEYS = {"candidates", "evaluator", "metric", "mode"}


def best_validation_accuracy(candidates) -> dict:
  """The usual `choices` entry: the candidate with the best accuracy of the evaluator
  "validation"."""
  return {
      "candidates": tuple(candidates),
      "evaluator": "validation",
      "metric": "accuracy",
      "mode": "max",
  }


def validate(config, order: list[str], stages: dict[str, Any]) -> None:
  """Each choice names earlier candidate stages and a non-test validation evaluator."""
  for stage, spec in dict(config.get("choices", {})).items():
    where = f"choices[{stage!r}]"
    if stage not in stages:
      raise ValueError(f"{where}: there is no stage {stage!r}.")
    if set(spec) != KEYS:
      raise ValueError(f"{where} must have exactly the keys {sorted(KEYS)}, got {sorted(spec)}.")
    if spec["mode"] not in ("max", "min") or not spec["candidates"]:
      raise ValueError(f"{where}: mode must be 'max' or 'min' and candidates non-empty.")
    for candidate in spec["candidates"]:
      if candidate not in stages or order.index(candidate) >= order.index(stage):
        raise ValueError(f"{where}: candidate {candidate!r} must be a stage that runs earlier.")
      evals = dict(stages[candidate].evals)
      if spec["evaluator"] not in evals:
        raise ValueError(
            f"{where}: candidate {candidate!r} has no evaluator {spec['evaluator']!r} "
            f"(it has {sorted(evals)})."
        )
      if evals[spec["evaluator"]]["split"] == stages[candidate].eval_split:
        raise ValueError(
            f"{where}: evaluator {spec['evaluator']!r} reads the eval (test) split "
            f"{stages[candidate].eval_split!r}; choose on a validation split."
        )


class Choice(NamedTuple):
  """The winner of a choice, its method config, and every candidate's score."""

  winner: str
  method: dict
  scores: dict[str, float]


def choose(spec, workdir: str, stage: str) -> Choice:
  """The candidate with the best finite score (NaN or inf never wins); nothing is written.

  Raises:
    ValueError: a candidate has no score, or none has a finite one.
  """
  scores = {}
  for candidate in spec["candidates"]:
    path = os.path.join(workdir, candidate, "results.json")
    with open(path) as f:
      results = json.load(f)
    value = results.get("evals", {}).get(spec["evaluator"], {}).get(spec["metric"])
    if value is None:
      raise ValueError(
          f"stage {stage!r}: {path} has no evals[{spec['evaluator']!r}][{spec['metric']!r}] "
          "to choose on."
      )
    scores[candidate] = float(value)
  finite = [c for c in spec["candidates"] if math.isfinite(scores[c])]
  if not finite:
    raise ValueError(
        f"stage {stage!r}: no candidate has a finite {spec['evaluator']}.{spec['metric']} to "
        f"choose on ({scores}); the candidate runs diverged."
    )
  sign = 1.0 if spec["mode"] == "max" else -1.0
  # Ties go to the first candidate listed, so the choice does not depend on dict order.
  winner = max(finite, key=lambda c: (sign * scores[c], -spec["candidates"].index(c)))
  with open(os.path.join(workdir, winner, "config.json")) as f:
    method = json.load(f)["method"]
  return Choice(winner, method, scores)


def write(choice: Choice, spec, workdir: str, stage: str) -> None:
  """WORKDIR/<stage>/choice.json; written only once every check of the stage has passed."""
  os.makedirs(os.path.join(workdir, stage), exist_ok=True)
  record = {**dict(spec), "scores": choice.scores, "chosen": choice.winner, "method": choice.method}
  with open(os.path.join(workdir, stage, "choice.json"), "w") as f:
    json.dump(record, f, indent=2)
