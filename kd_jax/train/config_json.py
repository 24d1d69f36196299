"""A run config as JSON data: tuples as lists (`listify`, so a config compares equal to its JSON
round trip and hashes the same in fingerprints), the portable form saved in WORKDIR/config.json
(`portable`), and the differences the resume check reports (`diff`).
"""

from __future__ import annotations

import os
from typing import Any


def diff(saved: dict, current: dict, prefix: str = "") -> list[str]:
  """Human-readable differences between two nested dicts (for the resume check)."""
  out = []
  for key in sorted(set(saved) | set(current)):
    a, b = saved.get(key, "<absent>"), current.get(key, "<absent>")
    if isinstance(a, dict) and isinstance(b, dict):
      out += diff(a, b, prefix=f"{prefix}{key}.")
    elif a != b:
      out.append(f"{prefix}{key}: {a!r} -> {b!r}")
  return out


_LATER_OPTIMIZER_KEYS = {"restart_steps": 0, "hold_steps": 1}  # with their defaults


def _sibling_relative(entry: dict, workdir: str) -> dict:
  """A copy of a teacher or `init_from` entry whose absolute "workdir" inside the parent of
  `workdir` (another stage of the same staged run) is made relative to `workdir`."""
  entry = dict(entry)
  path = entry.get("workdir")
  if isinstance(path, str) and os.path.isabs(path):
    root = os.path.dirname(os.path.abspath(workdir))
    path = os.path.normpath(path)
    if os.path.commonpath([root, path]) == root:
      entry["workdir"] = os.path.relpath(path, os.path.abspath(workdir))
  return entry


def portable(config_json: dict, workdir: str) -> dict:
  """A run config as saved in WORKDIR/config.json: teacher (and init_from) workdirs of sibling
  stages relative; `init_from` left out when unset.

  A staged run hands its stages absolute teacher paths (WORKDIR/teacher); saved as such, moving
  the workdir would make every resume look like a changed config. Teachers inside the parent of
  `workdir` (the stages of one staged run) are therefore stored relative to `workdir`
  ("../teacher"); other paths stay as given. Applied to both sides of the resume comparison, an
  old config that still holds absolute paths of the same place compares equal.

  Args:
    config_json: the config as a JSON-able dict (e.g. `json.loads(config.to_json())`).
    workdir: the run's own workdir.
  """
  out = dict(config_json)
  if "teachers" in out:
    out["teachers"] = [_sibling_relative(t, workdir) for t in out["teachers"] or ()]
  if isinstance(out.get("optimizer"), dict):
    # Keys added after workdirs existed are saved only when set, as `init_from` below.
    out["optimizer"] = {
        k: v
        for k, v in out["optimizer"].items()
        if not (k in _LATER_OPTIMIZER_KEYS and v == _LATER_OPTIMIZER_KEYS[k])
    }
  init = out.get("init_from")
  if not init:
    # Saved only when set, so the config.json of a run made before `init_from` existed still
    # compares equal on resume.
    out.pop("init_from", None)
  else:
    out["init_from"] = _sibling_relative(init, workdir)
  return out


def listify(value: Any) -> Any:
  """Tuples to lists recursively, so a config compares equal to its JSON round trip."""
  if isinstance(value, dict):
    return {k: listify(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [listify(v) for v in value]
  return value
