"""Metric output: JSON lines and TensorBoard event files in the workdir, and a progress bar.

Only process 0 writes. On resume, rows the interrupted run wrote *after* the restored step are
moved out of metrics.jsonl into metrics.discarded.jsonl (with a log line saying so), and
TensorBoard is told to purge them (`purge_step`), so the curves contain each step exactly once.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Mapping, Optional

import jax
import numpy as np
import tqdm

METRICS_FILE = "metrics.jsonl"


def _scalar(value) -> float:
  return float(np.asarray(value))


def read_metrics(workdir: str) -> list[dict]:
  """All rows of WORKDIR/metrics.jsonl (an empty list when there is none)."""
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def _summary_writer_class():
  """tensorboardX's SummaryWriter, imported lazily (protobuf is slow to import).

  tensorboardX imports torch when it is installed, only to accept torch tensors; that costs
  seconds per run and we log Python floats, so torch is hidden during the import (unless the
  process already uses it, in which case it is simply reused).
  """
  if "torch" in sys.modules:
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top

    return SummaryWriter
  sys.modules["torch"] = None  # makes `import torch` raise ImportError
  try:
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
  finally:
    del sys.modules["torch"]
  return SummaryWriter


class MetricWriter:
  """Writes {"step": s, "split": "train"|"eval", name: value, ...} rows."""

  def __init__(self, workdir: str, *, start_step: int):
    self.enabled = jax.process_index() == 0
    self.path = os.path.join(workdir, METRICS_FILE)
    self._tb = None
    if not self.enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    self._drop_rows_after(start_step)
    self._tb = _summary_writer_class()(
        os.path.join(workdir, "tensorboard"), purge_step=start_step + 1
    )

  def _drop_rows_after(self, step: int) -> None:
    rows = read_metrics(os.path.dirname(self.path) or ".")
    keep = [row for row in rows if row["step"] <= step]
    if len(keep) == len(rows):
      return
    discarded = [row for row in rows if row["step"] > step]
    with open(self.path + ".tmp", "w") as f:
      f.writelines(json.dumps(row) + "\n" for row in keep)
    with open(os.path.join(os.path.dirname(self.path), "metrics.discarded.jsonl"), "a") as f:
      f.writelines(json.dumps(row) + "\n" for row in discarded)
    os.replace(self.path + ".tmp", self.path)
    print(
        f"Resuming from step {step}: moved {len(discarded)} metric row(s) written after it by "
        "the interrupted run to metrics.discarded.jsonl.",
        flush=True,
    )

  def write(self, step: int, split: str, metrics: Mapping[str, float]) -> dict:
    row = {
        "step": int(step),
        "split": split,
        "time": time.time(),
        **{name: _scalar(value) for name, value in metrics.items()},
    }
    if not self.enabled:
      return row
    with open(self.path, "a") as f:
      f.write(json.dumps(row) + "\n")
    for name, value in row.items():
      if name not in ("step", "split", "time") and math.isfinite(value):
        self._tb.add_scalar(f"{split}/{name}", value, global_step=int(step))
    return row

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


class ProgressBar:
  """tqdm bar over steps with the latest loss in the postfix; tqdm computes rate and ETA."""

  def __init__(self, *, total: int, initial: int, enabled: bool, description: str = "train"):
    self._bar: Optional[tqdm.tqdm] = None
    if enabled and jax.process_index() == 0:
      self._bar = tqdm.tqdm(
          total=total,
          initial=initial,
          desc=description,
          unit="step",
          dynamic_ncols=True,
          mininterval=0.5,
      )

  def update(self, steps: int = 1, **postfix: float) -> None:
    if self._bar is None:
      return
    if postfix:
      self._bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)
    self._bar.update(steps)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
