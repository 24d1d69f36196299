"""The ReAugKD table: runs every stage, builds the knowledge bases between them, writes the report.

  python -m experiments.reports.reaugkd --variant=cpu [--workdir=DIR] [--out_dir=DIR]
  python -m experiments.reports.reaugkd --variant=cpu --teachers_only   # cache the teachers first

Between a task's teacher stage and its ReAugKD stage the runner does ReAugKD's step 1
(`kd_jax.methods.reaugkd.prepare_knowledge_base`: frozen-teacher pass over the train split,
SupCon projection, KB saved in WORKDIR/<task>_kb). After training it evaluates the ReAugKD
student itself: β is chosen on the validation split from the method's `eval_betas` grid and only
then applied to the test split; the retrieval latency overhead is timed on jit-compiled forward
passes (student alone vs student + exact top-k + mixing) and ScaNN's recall@k is measured on the
KB. Output: experiments/results/reaugkd_<variant>.md and .csv, the command at the top.
Rerunning the command resumes: finished stages only report, an existing KB is reused.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import app
from absl import flags
from absl import logging

from experiments.configs import reaugkd as table
from kd_jax import retrieval
from kd_jax.methods import reaugkd
from kd_jax.train import build
from kd_jax.train import checkpoint as checkpoint_lib
from kd_jax.train import config as config_lib
from kd_jax.train import loop
from kd_jax.train import steps as steps_lib

ROW_TITLES = {"teacher": "Teacher", "ce": "Student CE", "kd": "Vanilla KD", "rkd": "RKD",
              "reaugkd_no_retrieval": "ReAugKD w/o retrieval at inference",
              "reaugkd": "ReAugKD"}
_REAUGKD = "kd_jax.methods.reaugkd:ReAugKD"


def _is_reaugkd(stage_config) -> bool:
  return stage_config.method.name in (_REAUGKD, "reaugkd")


def _resolve(stage_config, workdir: str):
  """Relative teacher workdirs name earlier stages; a relative KB path lives in the workdir."""
  workdir = os.path.abspath(workdir)  # so that a resolved path is never resolved twice
  stage_config = stage_config.unlock() if hasattr(stage_config, "unlock") else stage_config
  teachers = config_lib.teacher_specs(stage_config)
  for teacher in teachers:
    if not os.path.isabs(teacher.workdir):
      teacher.workdir = os.path.join(workdir, teacher.workdir)
  stage_config.teachers = tuple(teachers)
  if _is_reaugkd(stage_config) and not os.path.isabs(stage_config.method.knowledge_base):
    stage_config.method.knowledge_base = os.path.join(workdir, stage_config.method.knowledge_base)
  return stage_config


def _text_batches(stage_config, split: str):
  """Ordered, masked batches of a split through the stage's eval transforms (no augmentation)."""
  api = build.data_api()
  source = build.get_source(stage_config, split)
  # pylint: disable-next=protected-access  (the trainer's own resolution of transform specs)
  transforms = build._transforms(stage_config.eval_transforms, api)
  return lambda: api.eval_batches(source, batch_size=stage_config.eval_batch_size,
                                  transforms=transforms)


def build_knowledge_base(stage_config) -> retrieval.KnowledgeBase:
  """ReAugKD step 1 for one task, from the ReAugKD stage's teacher, data and method settings."""
  method = build.build_method(stage_config)
  spec = config_lib.teacher_specs(stage_config)[0]
  teacher = build.build_model(spec.model, stage_config.num_classes, spec.model_kwargs)
  step, variables = checkpoint_lib.restore_exported_variables(spec.workdir)

  @jax.jit
  def forward(variables, ids):
    out = teacher.apply(variables, ids, train=False)
    return out["embedding"], out["logits"]

  teacher_fn = lambda batch: forward(variables, jnp.asarray(batch[stage_config.input_key]))
  print(f"=== knowledge base -> {method.knowledge_base}", flush=True)
  return reaugkd.prepare_knowledge_base(
      teacher_fn, _text_batches(stage_config, stage_config.train_split),
      directory=method.knowledge_base, teacher_id=f"{os.path.abspath(spec.workdir)}@{step}",
      projection_dim=method.projection_dim,
      contrastive_temperature=method.contrastive_temperature,
      projection_steps=method.projection_steps,
      projection_batch_size=method.projection_batch_size,
      projection_learning_rate=method.projection_learning_rate,
      kb_temperature=method.kb_temperature, seed=stage_config.seed)


def run_stages(config, workdir: str, *, teachers_only: bool = False) -> dict[str, dict]:
  """Like `kd_jax.train.stages.run`, plus the KB of each ReAugKD stage built before it runs.

  `teachers_only` runs just the `<task>_teacher` stages (to cache the fine-tuned teachers).
  """
  results = {}
  for name, stage_config in config_lib.validate_stages(config):
    if teachers_only and not name.endswith("_teacher"):
      continue
    stage_config = _resolve(stage_config, workdir)
    if _is_reaugkd(stage_config) and not os.path.exists(
        os.path.join(stage_config.method.knowledge_base, retrieval.knowledge_base.MANIFEST_FILE)):
      build_knowledge_base(stage_config)
    print(f"=== stage {name} -> {os.path.join(workdir, name)}", flush=True)
    results[name] = loop.train_and_evaluate(stage_config, os.path.join(workdir, name))
  if not teachers_only:
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump(results, f, indent=2)
  return results


def restore_state(workdir: str) -> dict[str, Any]:
  """The whole train state of a run's newest checkpoint (student and method params, KB state)."""
  return checkpoint_lib.restore_latest_state(workdir, missing="the ReAugKD stage has not run")[1]


def _median_seconds(fn, *args, repeats: int = 30) -> float:
  jax.block_until_ready(fn(*args))  # compile
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def evaluate_reaugkd(stage_config, stage_workdir: str, validation_split: str) -> dict[str, Any]:
  """β on validation, then test accuracy with and without retrieval; latency; ScaNN recall."""
  method = build.build_method(stage_config)
  student = build.build_model(stage_config.model, stage_config.num_classes,
                              stage_config.model_kwargs)
  state = restore_state(stage_workdir)
  variables = {"params": state["params"]["student"], **state["model_state"]}
  method_params, kb_state = state["params"]["method"], state["method_state"]
  key = stage_config.input_key
  forward = steps_lib.Forward(student, (), jnp.float32)

  @jax.jit
  def outputs(ids):
    out = forward.student_eval(variables["params"], state["model_state"], ids)
    return out["logits"], method.student_embedding(method_params, out)

  def collect(split):
    logits, embeddings, labels = [], [], []
    for batch in _text_batches(stage_config, split)():
      z, s = outputs(jnp.asarray(batch[key]))
      keep = np.asarray(batch["mask"], bool)
      logits.append(np.asarray(z)[keep])
      embeddings.append(np.asarray(s)[keep])
      labels.append(np.asarray(batch["label"])[keep])
    return np.concatenate(logits), np.concatenate(embeddings), np.concatenate(labels)

  betas = jnp.asarray(method.eval_betas)
  kb_embeddings = np.asarray(kb_state["kb_embeddings"])
  kb_soft_labels = kb_state["kb_soft_labels"]
  k, temperature = method.num_neighbors, method.student_temperature
  scann = retrieval.ScannSearcher(kb_embeddings, default_k=k,
                                  params=method.scann_params(kb_embeddings.shape[0]))
  mix = jax.jit(functools.partial(reaugkd.mix_retrieved, temperature=temperature))

  def augmented_probs(z, s, beta):
    """Exact top-k inside jit, or ScaNN on the host, then the same mixing (method option)."""
    if method.search_backend == "scann":
      indices, scores = scann.search(np.asarray(s), k)
      return mix(z, jnp.asarray(scores), kb_soft_labels[jnp.asarray(indices)], beta=beta)
    return reaugkd.retrieval_augmented_probs(z, s, kb_state["kb_embeddings"], kb_soft_labels,
                                             k=k, temperature=temperature, beta=beta)

  def accuracies(split):
    z, s, y = collect(split)
    probs = augmented_probs(jnp.asarray(z), jnp.asarray(s), betas)
    return np.mean(np.argmax(np.asarray(probs), -1) == y[None], axis=1), s

  validation, _ = accuracies(validation_split)
  best = int(np.argmax(validation))  # first maximum: the smallest β among ties
  test, test_embeddings = accuracies(stage_config.eval_split)

  # Latency: one example and one eval batch, student alone vs student + retrieval + mixing.
  batch = next(iter(_text_batches(stage_config, stage_config.eval_split)()))
  beta = float(method.eval_betas[best])
  student_only = jax.jit(lambda ids: jax.nn.softmax(outputs(ids)[0], axis=-1))
  if method.search_backend == "scann":
    with_retrieval = lambda ids: augmented_probs(*outputs(ids), beta)
  else:
    with_retrieval = jax.jit(lambda ids: augmented_probs(*outputs(ids), beta))
  latency = {}
  for size in (1, stage_config.eval_batch_size):
    ids = jnp.asarray(batch[key][:size])
    plain, augmented = _median_seconds(student_only, ids), _median_seconds(with_retrieval, ids)
    latency[size] = {"student_ms": 1e3 * plain, "reaugkd_ms": 1e3 * augmented,
                     "overhead": augmented / plain - 1.0}
  # ScaNN against exact search, queried with the student's test embeddings: the queries
  # ReAugKD actually issues (recall of its own neighbours, not of KB entries against each other).
  exact, _ = retrieval.ExactSearcher(kb_embeddings).search(test_embeddings, k)
  approx, _ = scann.search(test_embeddings, k)
  return {"beta": beta, "validation_accuracy": float(validation[best]),
          "test_accuracy": float(test[best]), "test_accuracy_no_retrieval":
          float(test[list(method.eval_betas).index(0.0)]) if 0.0 in method.eval_betas else None,
          "validation_by_beta": dict(zip(map(str, method.eval_betas), map(float, validation))),
          "latency": latency, "kb_size": int(kb_embeddings.shape[0]),
          "scann_recall": retrieval.recall_at_k(approx, exact), "k": k,
          "search_backend": method.search_backend}


def table_rows(variant: str, results: dict, evaluations: dict) -> dict[str, dict]:
  """{row: {task: test accuracy}}; the ReAugKD rows come from `evaluate_reaugkd`."""
  rows = {row: {} for row in ROW_TITLES}
  for task in table.tasks(variant):
    for row in ("teacher", "ce", "kd", "rkd"):
      rows[row][task] = results[table.stage_name(task, row)]["accuracy"]
    rows["reaugkd_no_retrieval"][task] = results[table.stage_name(task, "reaugkd")]["accuracy"]
    rows["reaugkd"][task] = evaluations[task]["test_accuracy"]
  for values in rows.values():
    values["average"] = float(np.mean(list(values.values())))
  return rows


def _settings_lines(variant: str) -> list[str]:
  config = table.get_config(variant)
  lines = []
  for task in table.tasks(variant):
    teacher = config.stages[table.stage_name(task, "teacher")]
    student = config.stages[table.stage_name(task, "reaugkd")]
    lines.append(
        f"- `{task}`: {teacher.dataset} (train `{teacher.train_split}`, test "
        f"`{teacher.eval_split}`, β on `{table.validation_split(variant, task)}`); teacher "
        f"{dict(teacher.model_kwargs)}, {teacher.total_steps} steps; students "
        f"{dict(student.model_kwargs)}, {student.total_steps} steps of {student.batch_size}.")
  method = build.build_method(config.stages[table.stage_name(table.tasks(variant)[0], "reaugkd")])
  lines.append(f"- ReAugKD settings: `{reaugkd.method_summary(method)}`")
  return lines


def write_report(variant: str, rows: dict, evaluations: dict, *, out_dir: str, command: str,
                 minutes: float | None = None) -> dict[str, str]:
  os.makedirs(out_dir, exist_ok=True)
  name = f"reaugkd_{variant}"
  columns = list(table.tasks(variant)) + ["average"]
  paths = {"md": os.path.join(out_dir, f"{name}.md"), "csv": os.path.join(out_dir, f"{name}.csv")}
  with open(paths["csv"], "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["# command: " + command])
    writer.writerow(["method"] + columns)
    for row, values in rows.items():
      writer.writerow([ROW_TITLES[row]] + [f"{100 * values[c]:.2f}" for c in columns])
  lines = [f"# ReAugKD, variant `{variant}`", "", "Command:", "", f"    {command}", "",
           table.__doc__.split("Variants:")[0].strip().splitlines()[0], "",
           *_settings_lines(variant), "",
           "Test accuracy (%); β for ReAugKD chosen on the validation split.", "",
           "| method | " + " | ".join(columns) + " |",
           "|---|" + "---|" * len(columns)]
  for row, values in rows.items():
    lines.append(f"| {ROW_TITLES[row]} | " + " | ".join(f"{100 * values[c]:.2f}" for c in columns)
                 + " |")
  backend = next(iter(evaluations.values()))["search_backend"]
  lines += ["", f"Retrieval at inference (backend `{backend}`: exact = top-k inside the jitted "
            "forward pass, scann = ScaNN on the host; median of 30 timed calls after "
            "compilation; ScaNN recall@k of the student's test queries against exact search over "
            "the same KB):", "",
            "| task | KB entries | k | β (validation) | batch | student ms | ReAugKD ms | overhead "
            "| ScaNN recall@k |", "|---|---|---|---|---|---|---|---|---|"]
  for task, ev in evaluations.items():
    for size, lat in ev["latency"].items():
      lines.append(f"| {task} | {ev['kb_size']} | {ev['k']} | {ev['beta']:.2f} | {size} | "
                   f"{lat['student_ms']:.2f} | {lat['reaugkd_ms']:.2f} | "
                   f"{100 * lat['overhead']:+.1f}% | {ev['scann_recall']:.3f} |")
  lines += ["", "Paper: ~3 % latency overhead (GPU, BERT-base teacher, 6-layer student)."]
  if minutes is not None:
    lines.append(f"\nWall-clock time of this run: {minutes:.1f} minutes.")
  with open(paths["md"], "w") as f:
    f.write("\n".join(lines) + "\n")
  with open(os.path.join(out_dir, f"{name}_evaluation.json"), "w") as f:
    json.dump(evaluations, f, indent=2, default=str)
  return paths


def reproduce(variant: str, workdir: str, out_dir: str, *, command: str | None = None
              ) -> dict[str, str]:
  """Runs (or resumes) the variant in `workdir`; writes reaugkd_<variant>.{md,csv} to out_dir."""
  start = time.time()
  config = table.get_config(variant)
  results = run_stages(config, workdir)
  evaluations = {}
  stages = dict(config_lib.validate_stages(config))
  for task in table.tasks(variant):
    stage = table.stage_name(task, "reaugkd")
    stage_config = _resolve(stages[stage], workdir)
    evaluations[task] = evaluate_reaugkd(stage_config, os.path.join(workdir, stage),
                                         table.validation_split(variant, task))
  rows = table_rows(variant, results, evaluations)
  command = command or f"python -m experiments.reports.reaugkd --variant={variant}"
  return write_report(variant, rows, evaluations, out_dir=out_dir, command=command,
                      minutes=(time.time() - start) / 60)


def main(argv):
  if len(argv) != 1:
    raise app.UsageError(f"Unexpected arguments {argv[1:]}.")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  variant = flags.FLAGS.variant
  workdir = flags.FLAGS.workdir or os.path.join("/tmp/kd_jax", f"reaugkd_{variant}")
  if flags.FLAGS.teachers_only:
    print(json.dumps(run_stages(table.get_config(variant), workdir, teachers_only=True), indent=2))
    return
  paths = reproduce(variant, workdir, flags.FLAGS.out_dir)
  print(open(paths["md"]).read())
  print("Written: " + ", ".join(paths.values()))


if __name__ == "__main__":
  # Defined here, not at import: experiments/reproduce.py defines flags of the same names.
  flags.DEFINE_string("variant", "cpu", "smoke, cpu, cpu_scratch or paper.")
  flags.DEFINE_string("workdir", None,
                      "Where the stages run (default /tmp/kd_jax/reaugkd_<variant>).")
  flags.DEFINE_string("out_dir", "experiments/results", "Where the report is written.")
  flags.DEFINE_bool("teachers_only", False, "Only fine-tune (and cache) the teachers.")
  app.run(main)
