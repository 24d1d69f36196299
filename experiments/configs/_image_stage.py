"""The part every stage of the image tables (DiSK, the method zoo) shares: one model trained with
SGD on a train split, a held-out validation split evaluated at the end (what `choices` and model
selection read), the test split as the final evaluation, one checkpoint at the last step.

Not a table (the leading underscore keeps it out of the checks that run every config file):
experiments.tables lists the tables by name. The caller adds the method, teachers,
transforms and anything its protocol changes.
"""

from __future__ import annotations

import ml_collections

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
