"""The CompRess table end to end at smoke size: the real MiniLM teacher used as it comes (a
pretrained teacher spec, and a 0-step stage for its own row), students distilled without labels
on the union corpus, the three evaluators on both tasks, the report."""

import csv
import json
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

from experiments.configs import compress as table
from kd_jax.methods import compress
from kd_jax.data import get_source
from kd_jax.data import tokenization
from kd_jax.evaluators import nearest_neighbour
from kd_jax.models import bert
from tests import compile_flags

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMOKE = table.settings("smoke")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  """`python -m experiments.reproduce compress --variant=smoke` in a subprocess, so that two
  compile settings apply to it alone (most of a smoke stage is XLA compilation): a persistent
  cache (the caller's JAX_COMPILATION_CACHE_DIR if set), through which the MiniLM teacher's and
  the student's programs, the same in every distilled stage, compile once; and LLVM optimisation
  off, as the steps run on a few batches only."""
  workdir = str(tmp_path_factory.mktemp("compress_work"))
  out_dir = str(tmp_path_factory.mktemp("compress_out"))
  env = dict(os.environ)
  env.setdefault("JAX_COMPILATION_CACHE_DIR", str(tmp_path_factory.mktemp("jax_cache")))
  env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
  env["XLA_FLAGS"] = compile_flags.with_fast_compile(env.get("XLA_FLAGS", ""))
  command = [sys.executable, "-m", "experiments.reproduce", "compress", "--variant=smoke"]
  done = subprocess.run(
      command + [f"--workdir={workdir}", f"--out_dir={out_dir}"],
      cwd=ROOT,
      env=env,
      capture_output=True,
      text=True,
      check=False,
      timeout=1200,
  )
  assert done.returncode == 0, done.stderr[-5000:]
  return workdir, {
      ext: os.path.join(out_dir, f"compress_smoke.{ext}") for ext in ("md", "csv", "png")
  }


def _results(workdir, stage):
  with open(os.path.join(workdir, stage, "results.json")) as f:
    return json.load(f)


def test_every_student_names_the_pretrained_teacher_and_nothing_trains_it():
  config = table.get_config("smoke")
  assert "anchor" not in config.stage_order
  assert config.stages.teacher.total_steps == 0
  for stage in config.stage_order:
    if stage == "teacher" or "supervised" in stage:
      assert not config.stages[stage].teachers, stage
      continue
    (spec,) = config.stages[stage].teachers
    assert spec.to_dict() == table.teacher_spec(SMOKE) and "workdir" not in spec


def test_cpu_ablations_change_one_setting_of_the_main_row():
  config, s = table.get_config("cpu"), table.settings("cpu")
  assert len(s["ablation_seeds"]["queue"]) == 3  # the queue ablation has a seed spread at cpu
  assert len(config.stage_order) == 1 + len(s["seeds"]) * (2 + 7) + 2 + 3 * len(s["queues"])
  grids = (("tau", "temperature", (0.02, 0.1)), ("queue", "queue_size", s["queues"]))
  for key, field, values in grids:
    for seed in s["ablation_seeds"][key]:
      main = config.stages[table.stage_name(table.ABLATION_ROW, seed)].method.to_dict()
      for value in values:
        ablation = config.stages[table.ablation_stage(key, value, seed)]
        assert ablation.method.to_dict() == {**main, field: value}, (key, value, seed)
        assert ablation.seed == seed


def test_cpu_run_is_sized_for_its_momentum_and_queues():
  """The issue's scale rules: the key encoder holds < 1 % of its random start after the first 20 %
  of the run, and every bank is full of real anchors within the first ~10 % of it."""
  s = table.settings("cpu")
  config = table.get_config("cpu")
  method = config.stages[table.stage_name("compress_2q", 0)].method
  m = compress.run_momentum(compress.CompRess.momentum, method.momentum_horizon, s["steps"])
  assert compress.random_start_share(m, round(0.2 * s["steps"])) < 0.01
  for k in {s["queue"], *s["queues"]}:
    assert compress.queue_fill_step(k, s["batch"]) <= 0.1 * s["steps"], k
  assert s["steps"] * s["batch"] >= 3 * 17_161  # at least 3 epochs of the distillation text


def _minilm_embeddings(*splits):
  """MiniLM's mean-pooled embeddings and labels of task splits, from the HF files (not the
  trainer), in one pass."""
  rows = []
  for split in splits:
    source = get_source(table.CORPUS, split)
    rows.append([source[i] for i in range(len(source))])
  texts = [r["text"] for part in rows for r in part]
  tokens = tokenization.tokenize_texts(texts, max_length=SMOKE["max_length"])
  model, variables = bert.load_hf_bert(bert.minilm_directory())
  apply = jax.jit(lambda x: model.apply(variables, x, train=False, outputs=("embedding",)))
  embeddings = np.asarray(apply(tokens["input_ids"])["embedding"])
  out, start = [], 0
  for part in rows:
    out.append((embeddings[start : start + len(part)], np.array([r["label"] for r in part])))
    start += len(part)
  return out


def test_the_teacher_row_is_the_pretrained_encoder_evaluated_at_step_0(smoke_run):
  workdir, _ = smoke_run
  results = _results(workdir, "teacher")
  assert results["step"] == 0
  checkpoints = os.path.join(workdir, "teacher", "checkpoints")
  assert not os.path.isdir(checkpoints) or not os.listdir(checkpoints)
  # Its 1-NN accuracy is that of the pretrained embeddings, computed here from the HF weights.
  splits = SMOKE["splits"]
  database, queries = _minilm_embeddings(f"bbc/{splits['train']}", f"bbc/{splits['test']}")
  expected = nearest_neighbour.nearest_neighbour_accuracy(*database, *queries)
  assert results["evals"]["bbc_nn"]["accuracy"] == pytest.approx(expected)
  assert expected > 0.5  # 5 topics: far above chance, unlike a randomly initialised encoder


def test_every_stage_has_the_three_evaluations_per_task(smoke_run):
  workdir, _ = smoke_run
  config = table.get_config("smoke")
  for stage in config.stage_order:
    evals = _results(workdir, stage)["evals"]
    tasks = [stage.split("_supervised")[0]] if "supervised" in stage else list(SMOKE["tasks"])
    for task in tasks:
      for key in ("linear", "nn", "ca"):
        assert 0.0 <= evals[f"{task}_{key}"]["accuracy"] <= 1.0, (stage, task, key)
      assert evals[f"{task}_nn"]["database_size"] == 64
  (queue,) = SMOKE["queues"]
  assert dict(config.stages[table.ablation_stage("queue", queue)].method)["queue_size"] == queue


def test_report_states_the_claims_from_numbers(smoke_run):
  _, paths = smoke_run
  text = open(paths["md"]).read()
  for row in ("Teacher (frozen, pretrained)", "Reg-BN", "CompRess-1q", "CompRess w/o momentum"):
    assert row in text
  claims = [line for line in text.split("## Claims")[1].splitlines() if "Claim" in line]
  assert len(claims) == 4
  for line in claims:  # a verdict computed from the numbers on every line
    assert re.search(r": (holds|does not hold|not tested)\b", line), line
  assert claims[3].endswith("not tested (one τ).")  # the smoke variant has no τ ablation
  with open(paths["csv"]) as f:
    rows = list(csv.DictReader(f))
  assert {r["evaluation"] for r in rows} == {"linear", "nn", "ca"}
  assert "teacher" in {r["stage"] for r in rows}
  assert os.path.getsize(paths["png"]) > 0
