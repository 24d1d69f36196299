"""The part every stage of the image tables (DiSK, the method zoo) shares: one model trained with
SGD on a train split, a held-out validation split evaluated at the end (what `choices` and model
selection read), the test split as the final evaluation, one checkpoint at the last step.

Not a table (the leading underscore keeps it out of the checks that run every config file):
experiments.tables lists the tables by name. The caller adds the method, teachers,
transforms and anything its protocol changes.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import ml_collections

from kd_jax.train import choices as choices_lib
from kd_jax.train.config import default_config


def image_stage(
    settings: dict,
    *,
    model: str,
    steps: int,
    batch: int,
    train_split: str,
    seed: int,
    learning_rate: float,
    weight_decay: float,
    log_points: int,
) -> ml_collections.ConfigDict:
  """`settings` is the table's variant (dataset, num_classes, validation_split, test_split);
  `log_points` train-metric rows over the run (the report's curves)."""
  c = default_config()
  c.seed = seed
  c.dataset = settings["dataset"]
  c.num_classes = settings["num_classes"]
  c.train_split = train_split
  c.validation_split = settings["validation_split"]
  c.eval_split = settings["test_split"]
  c.evals = ml_collections.ConfigDict(
      {"validation": {"kind": "metrics", "split": settings["validation_split"]}}
  )
  c.model = model
  c.batch_size = batch
  c.eval_batch_size = 500
  c.total_steps = steps
  c.log_every = max(1, steps // log_points)
  c.checkpoint_every = steps
  c.max_to_keep = 1
  c.optimizer.learning_rate = learning_rate
  c.optimizer.weight_decay = weight_decay
  return c


def add_tuned_method(
    stages: ml_collections.ConfigDict,
    order: list,
    choices: dict,
    values: Sequence,
    seeds: Sequence[int],
    candidate: Callable[[Any], tuple[str, ml_collections.ConfigDict]],
    later_seed: Callable[[int], tuple[str, ml_collections.ConfigDict]],
) -> None:
  """A method whose key hyper-parameter is chosen on validation: one first-seed stage per value
  (`candidate(value)` -> (stage name, config)), then one stage per later seed
  (`later_seed(seed)`, built with any value) whose method `choices` replaces by the candidate
  with the best validation accuracy before it runs. Appends to `stages`, `order`, `choices`."""
  candidates = []
  for value in values:
    name, stage = candidate(value)
    stages[name] = stage
    candidates.append(name)
  order += candidates
  for seed in seeds[1:]:
    name, stage = later_seed(seed)
    stages[name] = stage
    order.append(name)
    choices[name] = choices_lib.best_validation_accuracy(candidates)
