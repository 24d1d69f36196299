"""The config a workdir holds (WORKDIR/config.json): saved once at start-up, compared on resume.

A workdir resumes only the run it was made for: any difference outside the presentation keys is
an error naming the differences, and nothing in the workdir is overwritten.
"""

from __future__ import annotations

import json
import os

import jax
import ml_collections

from kd_jax.train import config as config_lib

# Keys that change only how a run reports, or where it keeps its teacher cache (a memo keyed by
# content), not what it computes: they may differ on resume, or be absent from older configs.
PRESENTATION_KEYS = (
    "progress_bar",
    "log_every",
    "eval_every",
    "async_checkpointing",
    "evals",
    "teacher_cache_dir",
)


def check_same(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Refuses to resume a workdir that holds a run of a different config (nothing overwritten)."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return
  current = config_lib.listify(config_lib.portable(json.loads(config.to_json()), workdir))
  with open(path) as f:
    saved = config_lib.listify(config_lib.portable(json.load(f), workdir))
  differences = [
      d
      for d in config_lib.diff(saved, current)
      if d.split(":")[0].split(".")[0] not in PRESENTATION_KEYS
  ]
  if differences:
    raise ValueError(
        f"{workdir} holds a run with a different config; use another workdir or "
        "delete it. Differences (saved -> now): " + "; ".join(differences)
    )


def save(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Written once every start-up check has passed, so a rejected config leaves no trace."""
  path = os.path.join(workdir, "config.json")
  if jax.process_index() == 0 and not os.path.exists(path):
    os.makedirs(workdir, exist_ok=True)
    with open(path, "w") as f:
      json.dump(config_lib.portable(json.loads(config.to_json()), workdir), f, indent=2)
