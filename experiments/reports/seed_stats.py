"""Seed statistics shared by the table reports: mean ± sample std of a cell, and whether two
cells differ beyond the seed spread (by more than twice the standard error of the difference of
their means — Welch's, one seed per run)."""

from __future__ import annotations

import numpy as np


def mean_std(values) -> tuple[float, float]:
  """(mean, sample std); the std of a single value is 0."""
  values = np.asarray(values, np.float64)
  return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def format_mean_std(values, digits: int = 2) -> str:
  """ "m ± s", or just "m" for a single value (a smoke table's one seed)."""
  mean, std = mean_std(values)
  return f"{mean:.{digits}f}" if len(values) == 1 else f"{mean:.{digits}f} ± {std:.{digits}f}"


def compare(a, b) -> tuple[float, float, str]:
  """(mean(a) − mean(b), its standard error, "beats" | "loses" | "within") — "beats" when the
  difference exceeds twice the standard error (with one seed any difference counts)."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  gap = float(a.mean() - b.mean())
  error = float(np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))) if len(a) > 1 else 0.0
  return gap, error, "beats" if gap > 2 * error else ("loses" if gap < -2 * error else "within")
