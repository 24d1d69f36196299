"""The ReAugKD table end to end at smoke size, on real Rotten Tomatoes text with a tiny BERT.

One generic path (`experiments.tables.reproduce`): teacher stage → CE / KD / RKD / ReAugKD
students for two seeds, the ReAugKD knowledge base built by the method's `prepare` (constants),
β chosen on validation by one evaluator and applied to test by another → Markdown + CSV + plot.
"""

import csv
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import tables
from experiments.configs import reaugkd as table
from experiments.reports import reaugkd as report
from kd_jax.methods import reaugkd
from kd_jax.train import build
from kd_jax.train import checkpoint as checkpoint_lib
from kd_jax.train import config as config_lib
from kd_jax.train import constants as constants_lib
from kd_jax.train import steps as steps_lib

STAGE = table.stage_name("rt", "reaugkd", 0)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("reaugkd_work"))
  out_dir = str(tmp_path_factory.mktemp("reaugkd_out"))
  paths = tables.reproduce("reaugkd", "smoke", workdir, out_dir)
  return workdir, paths


def _stage_results(workdir, stage):
  with open(os.path.join(workdir, stage, "results.json")) as f:
    return json.load(f)


def _stage_config(workdir, stage):
  config = dict(config_lib.validate_stages(table.get_config("smoke"), resolve=False))[stage]
  teachers = config_lib.teacher_specs(config)
  for teacher in teachers:
    teacher.workdir = os.path.join(workdir, teacher.workdir)
  config.teachers = tuple(teachers)
  return config


def test_every_stage_ran_and_the_kb_is_a_constant_not_a_checkpoint(smoke_run):
  workdir, _ = smoke_run
  config = table.get_config("smoke")
  for stage in config.stage_order:
    result = _stage_results(workdir, stage)
    assert {"eval", "validation"} <= set(result["evals"]), stage
    assert result["accuracy"] == result["evals"]["eval"]["accuracy"]
  for seed in table.seeds("smoke"):
    stage_dir = os.path.join(workdir, table.stage_name("rt", "reaugkd", seed))
    stage_config = _stage_config(workdir, table.stage_name("rt", "reaugkd", seed))
    fingerprint = json.load(open(os.path.join(stage_dir, "constants", "manifest.json")))
    constants = constants_lib.load(stage_dir, fingerprint["fingerprint"])
    assert constants["kb_embeddings"].shape == (200, 32)  # the train slice, every example once
    np.testing.assert_allclose(np.linalg.norm(constants["kb_embeddings"], axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(constants["kb_soft_labels"].sum(1), 1.0, atol=1e-5)
    _, state = checkpoint_lib.restore_latest_state(stage_dir)
    sizes = [leaf.size for leaf in jax.tree.leaves(state)]
    assert max(sizes) < constants["kb_embeddings"].size or not any(
        leaf.shape == (200, 32) for leaf in jax.tree.leaves(state)
    )
    assert stage_config.seed == seed


def test_beta_is_chosen_on_validation_and_applied_to_test(smoke_run):
  workdir, _ = smoke_run
  evals = _stage_results(workdir, STAGE)["evals"]
  validation, test = evals["val_reaug"], evals["test_reaug"]
  by_beta = {
      float(k[len("accuracy_beta") :]): v
      for k, v in validation.items()
      if k.startswith("accuracy_beta")
  }
  best = max(by_beta.values())
  assert validation["best_beta"] == min(b for b, v in by_beta.items() if v == best)
  assert test["beta"] == validation["best_beta"]
  assert test["accuracy"] == test[f"accuracy_beta{test['beta']:.2f}"]
  # β = 0 is the student alone: the evaluator and the per-example "eval" evaluator agree.
  assert test["accuracy_no_retrieval"] == pytest.approx(evals["eval"]["accuracy"], abs=1e-6)
  assert 0.9 <= test["scann_recall"] <= 1.0  # the evaluator's floor (scann_min_recall)
  assert test["latency_b1_student_ms"] > 0 and test["latency_b1_reaugkd_ms"] > 0


def test_test_accuracy_matches_an_independent_computation(smoke_run):
  """Restore the student and the constants by hand and recompute the test accuracy at β."""
  workdir, _ = smoke_run
  stage_dir = os.path.join(workdir, STAGE)
  config = _stage_config(workdir, STAGE)
  method = build.build_method(config)
  student = build.build_model(config.model, config.num_classes, config.model_kwargs)
  _, state = checkpoint_lib.restore_latest_state(stage_dir)
  manifest = json.load(open(os.path.join(stage_dir, "constants", "manifest.json")))
  constants = constants_lib.load(stage_dir, manifest["fingerprint"])
  test = _stage_results(workdir, STAGE)["evals"]["test_reaug"]
  forward = steps_lib.Forward(student, (), jnp.float32)
  correct, total = 0, 0
  for batch in build.build_data(config).batches(config.eval_split, sharded=False):
    out = forward.student_eval(
        state["params"]["student"], state["model_state"], jnp.asarray(batch["input_ids"])
    )
    probs = reaugkd.retrieval_augmented_probs(
        out["logits"],
        method.student_embedding(state["params"]["method"], out),
        jnp.asarray(constants["kb_embeddings"]),
        jnp.asarray(constants["kb_soft_labels"]),
        k=method.num_neighbors,
        temperature=method.student_temperature,
        beta=test["beta"],
    )
    keep = batch["mask"]
    correct += int(np.sum((np.argmax(np.asarray(probs), -1) == batch["label"])[keep]))
    total += int(keep.sum())
  assert total == 100
  assert test["accuracy"] == pytest.approx(correct / total, abs=1e-9)


def test_report_has_the_command_rows_seeds_and_findings(smoke_run):
  workdir, paths = smoke_run
  text = open(paths["md"]).read()
  assert "python -m experiments.reproduce reaugkd --variant=smoke" in text
  for title in report.ROW_TITLES.values():
    assert f"| {title} |" in text
  assert "## Which differences exceed the seed spread" in text
  assert "## What this run reproduces" in text
  with open(paths["csv"]) as f:
    rows = list(csv.reader(f))
  assert rows[0][0].startswith("# command: python -m experiments.reproduce reaugkd")
  assert rows[1] == ["method", "column", "seed", "test_accuracy"]
  teacher = _stage_results(workdir, table.stage_name("rt", "teacher"))["accuracy"]
  assert rows[2][:2] == ["Teacher", "rt"] and float(rows[2][3]) == pytest.approx(
      100 * teacher, abs=0.01
  )
  ce = [float(r[3]) for r in rows[2:] if r[0] == "Student CE" and r[1] == "rt"]
  assert ce == pytest.approx(
      [
          100 * _stage_results(workdir, table.stage_name("rt", "ce", s))["accuracy"]
          for s in table.seeds("smoke")
      ],
      abs=0.01,
  )
  assert os.path.getsize(paths["png"]) > 1000


def test_every_variant_validates_and_has_the_rows():
  for variant in ("smoke", "cpu", "cpu_scratch", "paper"):
    config = table.get_config(variant)
    # The paper variant's GLUE data and BERT-base are not available offline: schema only.
    stages = dict(config_lib.validate_stages(config, resolve=variant != "paper"))
    for task in table.tasks(variant):
      assert table.stage_name(task, "teacher") in stages
      for seed in table.seeds(variant):
        for row in table.STUDENT_ROWS:
          assert table.stage_name(task, row, seed) in stages
  cpu = table.get_config("cpu").stages
  assert cpu.rt_teacher.model_kwargs.init_from == "minilm"
  assert cpu.rt_reaugkd_s0.model_kwargs.num_layers == 3
  assert tuple(cpu.bbc_kd_s1.model_kwargs.init_layers) == (0, 2, 4)
  assert len(table.seeds("cpu")) == 3
  assert table.get_config("cpu_scratch").stages.rt_ce_s0.model_kwargs.init_from == "scratch"
  assert table.get_config("paper").stages.mnli_teacher.dataset == "glue/mnli"
  with pytest.raises(ValueError, match="variants"):
    table.get_config("gpu")


def test_student_from_teacher_layers_copies_minilm_weights():
  from kd_jax.models import bert, pretrained_bert

  _, minilm = bert.load_hf_bert(bert.minilm_directory())
  model = pretrained_bert.bert_classifier(3, num_layers=2, init_from="minilm", init_layers=(1, 4))
  variables = model.init({"params": jax.random.key(0)}, jnp.zeros((2, 8), jnp.int32), train=False)
  variables = model.load_pretrained(variables)
  for new, old in (
      ("layer_0", "layer_1"),
      ("layer_1", "layer_4"),
      ("word_embeddings", "word_embeddings"),
  ):
    for a, b in zip(
        jax.tree.leaves(variables["params"][new]), jax.tree.leaves(minilm["params"][old])
    ):
      np.testing.assert_array_equal(a, b)
  assert variables["params"]["classifier"]["kernel"].shape == (384, 3)
  with pytest.raises(ValueError, match="init_layers"):
    pretrained_bert.bert_classifier(2, num_layers=2, init_from="minilm", init_layers=(0, 9))
  with pytest.raises(ValueError, match="init_from is empty"):
    pretrained_bert.bert_classifier(2, init_from="")
