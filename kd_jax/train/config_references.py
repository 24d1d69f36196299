"""FieldReferences shared between keys of a config, and overrides that would write through them.

ml_collections lets two keys hold one `FieldReference`; setting either key then sets the
reference, so the other key changes too. In a config that is a trap: `--config.stages.teacher.
checkpoint_every=5` on a key that shares its reference with `total_steps` silently trains for 5
steps. Shipped configs give every key its own one-way reference to a setting
(`ConfigDict.get_oneway_ref`), so an override changes one key, or, for a setting, every key
that reads it; `shared_references` finds the configs that do not, and `check_overrides` refuses
an override that would write through a shared reference, in one line.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Iterable, Iterator

import ml_collections
from ml_collections import config_dict


def _fields(node: Any, path: str) -> Iterator[tuple[str, Any]]:
  """(path, value) of every field below `node`, FieldReferences kept as they are."""
  if isinstance(node, ml_collections.ConfigDict):
    items = node.items(preserve_field_references=True)
  elif isinstance(node, dict):
    items = node.items()
  elif isinstance(node, (tuple, list)):
    items = enumerate(node)
  else:
    return
  for key, value in items:
    child = f"{path}.{key}" if path else str(key)
    yield child, value
    if not isinstance(value, config_dict.FieldReference):
      yield from _fields(value, child)


def shared_references(config: ml_collections.ConfigDict) -> list[tuple[str, ...]]:
  """Groups of two or more paths whose keys hold one and the same FieldReference object."""
  paths: dict[int, list[str]] = {}
  for path, value in _fields(config, ""):
    if isinstance(value, config_dict.FieldReference):
      paths.setdefault(id(value), []).append(path)
  return sorted(tuple(group) for group in paths.values() if len(group) > 1)


def check_overrides(config: ml_collections.ConfigDict, overrides: Iterable[str]) -> None:
  """Refuses an override (a dotted path) of a key that shares its reference with other keys.

  Call it with the config as the file built it (before the overrides): afterwards the shared
  value has already been rewritten everywhere.

  Raises:
    ValueError: naming the override and the keys it would change with it.
  """
  groups = {path: group for group in shared_references(config) for path in group}
  for override in overrides:
    if override in groups:
      others = [p for p in groups[override] if p != override]
      raise ValueError(
          f"--config.{override} would also change {', '.join(others)}: the config file gives "
          "these keys one shared FieldReference. Give each key its own one-way reference "
          "(ConfigDict.get_oneway_ref) in the config file, or override the setting they share."
      )


def check_command_line(config_flag) -> None:
  """`check_overrides` for the `--config.<key>=...` overrides of an ml_collections config flag.

  The config file is built once more, without the overrides, to see its references as written.
  """
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top

  overrides = list(config_flags.get_override_values(config_flag))
  if not overrides:
    return
  # "FILE.py[:ARG]", loaded as ml_collections loads it: get_config(ARG) when ARG is given.
  filename, *argument = config_flags.get_config_filename(config_flag).split(":", 1)
  spec = importlib.util.spec_from_file_location("_config_as_written", filename)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  check_overrides(module.get_config(*argument), overrides)
