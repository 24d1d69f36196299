"""Fixed, seeded train / validation / test assignment for sources that ship without splits.

Splits are part of a dataset's definition, so they must not change between runs or machines: each
assignment below depends only on the sorted group names and a fixed seed, never on file-system
order or hash randomisation.
"""

from __future__ import annotations

from typing import Hashable, Sequence

import numpy as np

SPLIT_NAMES = ("train", "validation", "test")


def assign_groups(
    groups: Sequence[Hashable], *, fractions=(0.8, 0.1, 0.1), seed: int = 0
) -> dict[Hashable, str]:
  """Maps each distinct group to a split so that no group is in two splits.

  The distinct groups are sorted, permuted with `np.random.default_rng(seed)`, and cut into
  consecutive runs of `round(fraction * n_groups)` groups (the last split takes the rest).
  """
  if not np.isclose(sum(fractions), 1.0) or len(fractions) != len(SPLIT_NAMES):
    raise ValueError(f"fractions must be three numbers summing to 1, got {fractions}.")
  distinct = sorted(set(groups))
  order = np.random.default_rng(seed).permutation(len(distinct))
  n_train = int(round(fractions[0] * len(distinct)))
  n_validation = int(round(fractions[1] * len(distinct)))
  bounds = (n_train, n_train + n_validation)
  assignment = {}
  for position, group_index in enumerate(order):
    split = 0 if position < bounds[0] else 1 if position < bounds[1] else 2
    assignment[distinct[group_index]] = SPLIT_NAMES[split]
  return assignment


def stratified_split(
    labels: Sequence[int], *, fractions=(0.8, 0.1, 0.1), seed: int = 0
) -> np.ndarray:
  """Returns an array of split names, one per example, with each class cut by `fractions`.

  Within each class the example positions are permuted with a generator seeded by
  `(seed, class)`, so adding a class does not reshuffle the others.
  """
  labels = np.asarray(labels)
  result = np.empty(len(labels), dtype=object)
  for label in np.unique(labels):
    members = np.flatnonzero(labels == label)
    members = members[np.random.default_rng([seed, int(label)]).permutation(len(members))]
    n_train = int(round(fractions[0] * len(members)))
    n_validation = int(round(fractions[1] * len(members)))
    result[members[:n_train]] = "train"
    result[members[n_train : n_train + n_validation]] = "validation"
    result[members[n_train + n_validation :]] = "test"
  return result
