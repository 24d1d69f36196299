"""What a workdir holds about its run: WORKDIR/config.json and WORKDIR/data.json.

Both are written once at start-up, after every check has passed, and compared on resume. A workdir
resumes only the run it was made for: any difference outside the presentation keys is an error
naming the differences, and nothing in the workdir is overwritten. data.json keeps the data's
fingerprint (`kd_jax.data.fingerprint`: a user file's hash, a dataset's version and split sizes)
and the form of the model input; a resume, and a later run that reads this run as its teacher,
refuse data that changed since, naming the file.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np

from kd_jax.train import config_json

DATA_FILE = "data.json"

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


def read_json(path: str) -> Any:
  """A JSON file of a workdir; a truncated or edited one is one line naming the file."""
  with open(path) as f:
    text = f.read()
  try:
    return json.loads(text)
  except json.JSONDecodeError as error:
    raise ValueError(
        f"{path} is not valid JSON ({error}; {len(text)} characters, perhaps truncated by a "
        "full disk or an interrupted copy): restore it from the run's command, or delete the "
        "workdir."
    ) from error


def _data_api():
  from kd_jax.data import fingerprint  # pylint: disable=g-import-not-at-top  (TFDS import)

  return fingerprint


def check_same(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Refuses to resume a workdir that holds a run of a different config or of changed data."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return
  current = config_json.listify(config_json.portable(json.loads(config.to_json()), workdir))
  saved = config_json.listify(config_json.portable(read_json(path), workdir))
  differences = [
      d
      for d in config_json.diff(saved, current)
      if d.split(":")[0].split(".")[0] not in PRESENTATION_KEYS
  ]
  if differences:
    raise ValueError(
        f"{workdir} holds a run with a different config; use another workdir or "
        "delete it. Differences (saved -> now): " + "; ".join(differences)
    )
  check_data(config, workdir, where=f"the run in {workdir}")


def check_data(config: ml_collections.ConfigDict, workdir: str, *, where: str) -> None:
  """Refuses `config`'s data when it differs from the data the run in `workdir` was trained on.

  Used on resume and by a run that reads `workdir` as its teacher; a workdir written before
  data.json existed has nothing to compare with.
  """
  path = os.path.join(workdir, DATA_FILE)
  if not os.path.exists(path):
    return
  saved = read_json(path).get("fingerprint")
  if not saved:
    return
  fingerprint = _data_api()
  problem = fingerprint.difference(saved, fingerprint.of_config(config), where=where)
  if problem:
    raise ValueError(problem)


def model_input_spec(example: dict, input_key: str) -> dict[str, Any]:
  """The form of one training example's model input: dtype, shape and range as the model sees
  it (uint8 pixels are scaled to [0, 1]); `kd_jax.predict` holds new inputs to it."""
  raw = np.asarray(example[input_key])
  spec = {"key": input_key, "dtype": str(raw.dtype), "shape": list(raw.shape[1:])}
  if raw.dtype == np.uint8 or np.issubdtype(raw.dtype, np.floating):
    scaled = raw.astype(np.float32) / (255.0 if raw.dtype == np.uint8 else 1.0)
    spec.update(min=float(scaled.min()), max=float(scaled.max()))
  return spec


def read_data(workdir: str) -> dict[str, Any] | None:
  """WORKDIR/data.json ({"fingerprint", "model_input"}), or None for older workdirs."""
  path = os.path.join(workdir, DATA_FILE)
  return read_json(path) if os.path.exists(path) else None


def save(config: ml_collections.ConfigDict, workdir: str, *, example: dict | None = None) -> None:
  """Written once every start-up check has passed, so a rejected config leaves no trace.

  `example`: the first train batch, whose model input data.json describes.
  """
  path = os.path.join(workdir, "config.json")
  if jax.process_index() == 0 and not os.path.exists(path):
    os.makedirs(workdir, exist_ok=True)
    data = {"fingerprint": _data_api().of_config(config)}
    if example is not None and config.input_key in example:
      data["model_input"] = model_input_spec(example, config.input_key)
    with open(os.path.join(workdir, DATA_FILE), "w") as f:
      json.dump(data, f, indent=2)
    with open(path, "w") as f:
      json.dump(config_json.portable(json.loads(config.to_json()), workdir), f, indent=2)


def check_finished(workdir: str) -> None:
  """Refuses to read a run as finished while it trains, or when it never finished.

  For `kd_jax.predict` and `experiments.evaluate`: a checkpoint of an unfinished run is not the
  model its config describes, and one still training changes under the reader.
  """
  from kd_jax.train import workdir_lock  # pylint: disable=g-import-not-at-top

  holder = workdir_lock.busy_holder(workdir)
  if holder:
    raise RuntimeError(
        f"{workdir} is still training ({holder}); wait for it to finish before loading it."
    )
  if not os.path.exists(os.path.join(workdir, "results.json")):
    raise RuntimeError(
        f"{workdir} holds an unfinished run (no results.json: it stopped before its last step); "
        "re-run its command to finish it before loading it."
    )


def check_model_input(spec: dict[str, Any] | None, x: np.ndarray, workdir: str) -> None:
  """New inputs (after the run's eval_transforms) must have the form the run was trained on.

  `spec` is data.json's "model_input" (None for workdirs written before it: nothing to check).
  Raises ValueError naming the expected and the given shape, or the value range: float images
  of 0-255 given to a model trained on uint8 pixels (which it saw scaled to [0, 1]) would change
  most predictions silently.
  """
  if not spec:
    return
  x = np.asarray(x)
  if list(x.shape[1:]) != list(spec["shape"]):
    raise ValueError(
        f"inputs have shape {list(x.shape[1:])} after the run's eval_transforms, but {workdir} "
        f"was trained on {spec['key']!r} of shape {spec['shape']} ({spec['dtype']}): convert "
        "them (colour channels, size) to that shape first."
    )
  if "max" not in spec or not (x.dtype == np.uint8 or np.issubdtype(x.dtype, np.floating)):
    return
  scaled = x.astype(np.float32) / (255.0 if x.dtype == np.uint8 else 1.0)
  low, high = spec["min"], spec["max"]
  margin = max(high - low, 1e-6)  # generous: the training range is one batch's
  if scaled.min() < low - margin or scaled.max() > high + margin:
    raise ValueError(
        f"inputs ({x.dtype}) range over [{scaled.min():g}, {scaled.max():g}] as the model sees "
        f"them, but {workdir} was trained on values in [{low:g}, {high:g}] ({spec['dtype']} "
        "data; uint8 pixels are scaled to [0, 1], floats are used as given): give uint8 "
        "pixels, or floats scaled like the training data."
    )
