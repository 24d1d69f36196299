"""A finished run, loaded for use: predictions on new inputs and metrics on any split.

    from kd_jax import predict
    model = predict.load("/tmp/text_kd/student_kd")         # a stage's workdir
    model.predict(["a gripping, beautifully shot film", "dull"])
    # {"label": [2, 0], "name": ["pos", "neg"], "probabilities": [[...], [...]]}
    predict.evaluate("/tmp/text_kd/student_kd", "validation")
    # {"accuracy": ..., "agreement": ..., "predictive_kl": ..., "teacher_accuracy": ...}

Everything comes from the workdir: the run's config.json (model, dataset, transforms), the newest
checkpoint (student variables only) and, for class names, WORKDIR/labels.json or else the
dataset's own names. New inputs go through the run's `eval_transforms` — the same tokeniser and
normalisation as in training — so texts are given as strings and images as uint8 arrays; inputs
of another shape or value range than the run's (WORKDIR/data.json) are refused in one line, and
so is a run that is still training or never finished.
`python -m experiments.evaluate` is the command-line form of `evaluate`.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The validated config a run was trained with (WORKDIR/config.json)."""
  from kd_jax.train import config as config_lib  # pylint: disable=g-import-not-at-top
  from kd_jax.train import config_validation  # pylint: disable=g-import-not-at-top
  from kd_jax.train import workdir_config  # pylint: disable=g-import-not-at-top

  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    stages = (
        sorted(
            d
            for d in os.listdir(workdir)
            if os.path.exists(os.path.join(workdir, d, "config.json"))
        )
        if os.path.isdir(workdir)
        else []
    )
    hint = f" It holds the stages {stages}: give one of them." if stages else ""
    raise FileNotFoundError(f"{workdir} holds no run (no config.json).{hint}")
  saved = workdir_config.read_json(path)
  return config_validation.validate(ml_collections.ConfigDict(saved), name=path)


def _label_names(workdir: str, config, source=None) -> tuple[str, ...] | None:
  from kd_jax.data import user_data  # pylint: disable=g-import-not-at-top

  names = user_data.read_label_names(workdir)
  if names is None:
    if source is None:
      from kd_jax import data  # pylint: disable=g-import-not-at-top

      try:
        source = data.get_source(
            config.dataset,
            config.train_split,
            data_dir=config.data_dir,
            manual_dir=config.manual_dir,
        )
      except Exception:  # pylint: disable=broad-except  (names are optional; ids still work)
        return None
    names = getattr(source, "label_names", None)
  if names is not None and len(names) != config.num_classes:
    raise ValueError(
        f"{workdir}: {len(names)} class names for num_classes=" f"{config.num_classes}."
    )
  return tuple(names) if names else None


class Model:
  """A trained student (or teacher) run: `predict(inputs)` and `logits(batch)`."""

  def __init__(self, workdir: str):
    from kd_jax.train import build  # pylint: disable=g-import-not-at-top
    from kd_jax.train import checkpoint  # pylint: disable=g-import-not-at-top
    from kd_jax.train import guards  # pylint: disable=g-import-not-at-top
    from kd_jax.train import workdir_config  # pylint: disable=g-import-not-at-top

    self.workdir = workdir
    self.config = load_config(workdir)
    workdir_config.check_finished(workdir)
    self._input_spec = (workdir_config.read_data(workdir) or {}).get("model_input")
    self.module = build.build_model(
        self.config.model, self.config.num_classes, self.config.model_kwargs
    )
    self.step, self.variables = checkpoint.restore_exported_variables(workdir)
    guards.check_finite_variables(self.variables, f"the run in {workdir}")
    # pylint: disable-next=protected-access
    self.transforms = build._transforms(self.config.eval_transforms, build.data_api())
    self.label_names = _label_names(workdir, self.config)
    self._apply = jax.jit(lambda variables, x: self.module.apply(variables, x, train=False))

  def logits(self, batch: dict[str, np.ndarray]) -> np.ndarray:
    """Logits [batch, classes] for a batch of transformed examples (float32)."""
    return np.asarray(self._outputs(batch)["logits"], np.float32)

  def _outputs(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
    from kd_jax.train import forward as forward_lib  # pylint: disable=g-import-not-at-top

    x = forward_lib.model_input(
        {k: jnp.asarray(v) for k, v in batch.items() if k == self.config.input_key},
        self.config.input_key,
        jnp.float32,
    )
    return self._apply(self.variables, x)

  def _example(self, value) -> dict[str, Any]:
    """A raw input as a record of the run's dataset: text or an image, and a dummy label."""
    if isinstance(value, dict):
      example = dict(value)
    elif isinstance(value, str):
      example = {"text": value}
    else:
      image = np.asarray(value)
      example = {"image": image[..., None] if image.ndim == 2 else image}
    example.setdefault("label", np.int64(0))  # transforms such as KeepKeys may expect one
    rng = np.random.default_rng(0)
    for transform in self.transforms:
      example = transform(example, rng)
    if self.config.input_key not in example:
      raise ValueError(
          f"Input {str(value)[:60]!r} became {sorted(example)} after the run's "
          f"eval_transforms, without its input_key {self.config.input_key!r}; give "
          "texts as str, images as [H, W(, C)] arrays, or records as dicts."
      )
    return example

  def batch(self, inputs: Sequence[Any]) -> dict[str, np.ndarray]:
    """Raw inputs (texts, images or records) as the model's input batch, via eval_transforms."""
    if isinstance(inputs, (str, dict)):
      raise TypeError("Give a list of inputs; wrap a single one in a list.")
    from kd_jax.train import workdir_config  # pylint: disable=g-import-not-at-top

    key = self.config.input_key
    batch = {key: np.stack([self._example(value)[key] for value in inputs])}
    workdir_config.check_model_input(self._input_spec, batch[key], self.workdir)
    return batch

  def outputs(self, inputs: Sequence[Any]) -> dict[str, Any]:
    """Every output of the model ("logits", "embedding", ...) for a list of raw inputs."""
    return jax.device_get(self._outputs(self.batch(inputs)))

  def predict(self, inputs: Sequence[Any], *, batch_size: int = 256) -> dict[str, list]:
    """Class ids, names (when the run has them) and probabilities for each input."""
    if isinstance(inputs, (str, dict)):
      raise TypeError("predict expects a list of inputs; wrap a single one in a list.")
    logits = [
        self.logits(self.batch(inputs[start : start + batch_size]))
        for start in range(0, len(inputs), batch_size)
    ]
    logits = np.concatenate(logits) if logits else np.zeros((0, self.config.num_classes))
    labels = logits.argmax(-1)
    out = {"label": labels.tolist(), "probabilities": jax.nn.softmax(logits).tolist()}
    if self.label_names:
      out["name"] = [self.label_names[i] for i in labels]
    return out


def load(workdir: str) -> Model:
  """Loads the finished run in `workdir` (one stage's directory of a staged run)."""
  return Model(workdir)


def evaluate(workdir: str, split: str, *, batch_size: int | None = None) -> dict[str, float]:
  """Metrics of a finished run on any split of its dataset, with its teachers when it has any.

  Returns accuracy, and with teachers: agreement (top-1), predictive KL(teacher ‖ student) and
  the teacher's accuracy — the same per-example metrics as the trainer's, averaged over `split`.
  """
  from kd_jax import data  # pylint: disable=g-import-not-at-top
  from kd_jax import losses, metrics  # pylint: disable=g-import-not-at-top
  from kd_jax.train import config as config_lib  # pylint: disable=g-import-not-at-top

  student = load(workdir)
  config = student.config
  # Saved configs name a sibling stage's teacher relative to the run ("../teacher").
  teachers = [
      load(os.path.normpath(os.path.join(workdir, spec.workdir)))
      for spec in config_lib.teacher_specs(config)
  ]
  source = data.get_source(
      config.dataset, split, data_dir=config.data_dir, manual_dir=config.manual_dir
  )
  sums: dict[str, float] = {}
  for batch in data.eval_batches(
      source,
      batch_size=batch_size or config.eval_batch_size,
      transforms=student.transforms,
      shard_index=0,
      shard_count=1,
  ):
    mask = batch["mask"].astype(np.float64)
    logits = student.logits(batch)
    per_example = {"accuracy": metrics.accuracy(logits, batch["label"])}
    if teachers:
      teacher_logits = losses.ensemble_logits(np.stack([t.logits(batch) for t in teachers]))
      per_example.update(
          agreement=metrics.top_k_agreement(logits, teacher_logits, k=1),
          predictive_kl=metrics.predictive_kl(teacher_logits, logits),
          teacher_accuracy=metrics.accuracy(teacher_logits, batch["label"]),
      )
    for name, values in per_example.items():
      sums[name] = sums.get(name, 0.0) + float(np.sum(np.asarray(values) * mask))
    sums["count"] = sums.get("count", 0.0) + float(mask.sum())
  if not sums.get("count"):
    raise ValueError(f"Split {split!r} of {config.dataset!r} holds no examples.")
  count = sums.pop("count")
  return {
      **{name: value / count for name, value in sums.items()},
      "count": int(count),
      "split": split,
      "step": student.step,
  }
