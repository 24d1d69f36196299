"""The ReAugKD table end to end at smoke size, on real Rotten Tomatoes text with a tiny BERT.

teacher stage → knowledge base (teacher pass, SupCon projection) → CE / KD / RKD / ReAugKD
students → β chosen on validation → test accuracy, latency, ScaNN recall → Markdown + CSV.
"""

import csv
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import reaugkd as table
from experiments.reports import reaugkd as report
from kd_jax import retrieval
from kd_jax.train import config as config_lib


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("reaugkd_work"))
  out_dir = str(tmp_path_factory.mktemp("reaugkd_out"))
  paths = report.reproduce("smoke", workdir, out_dir)
  with open(os.path.join(out_dir, "reaugkd_smoke_evaluation.json")) as f:
    evaluation = json.load(f)["rt"]
  return workdir, paths, evaluation


def _stage_results(workdir, stage):
  with open(os.path.join(workdir, stage, "results.json")) as f:
    return json.load(f)


def test_every_stage_ran_and_the_kb_covers_the_train_split(smoke_run):
  workdir, _, evaluation = smoke_run
  config = table.get_config("smoke")
  for stage in config.stage_order:
    result = _stage_results(workdir, stage)
    assert 0.0 <= result["accuracy"] <= 1.0, stage
  kb = retrieval.load_knowledge_base(os.path.join(workdir, table.kb_directory("rt")),
                                     embedding_dim=32, num_classes=2)
  assert kb.size == evaluation["kb_size"] == 200  # rotten_tomatoes_small's train slice, once each
  np.testing.assert_allclose(np.linalg.norm(kb.embeddings, axis=1), 1.0, atol=1e-5)
  np.testing.assert_allclose(kb.soft_labels.sum(1), 1.0, atol=1e-5)


def test_beta_is_chosen_on_validation_and_matches_the_trainers_evaluation(smoke_run):
  workdir, _, evaluation = smoke_run
  by_beta = {float(b): v for b, v in evaluation["validation_by_beta"].items()}
  best = max(by_beta.values())
  assert evaluation["beta"] == min(b for b, v in by_beta.items() if v == best)
  # Two code paths: the trainer's eval step (KB in the method state) and the report's own
  # evaluation from the restored checkpoint must give the same test accuracy at that β.
  trained = _stage_results(workdir, table.stage_name("rt", "reaugkd"))
  assert evaluation["test_accuracy"] == pytest.approx(
      trained[f"reaug_accuracy_beta{evaluation['beta']:.2f}"], abs=1e-6)
  assert evaluation["test_accuracy_no_retrieval"] == pytest.approx(trained["accuracy"], abs=1e-6)
  assert 0.0 <= evaluation["scann_recall"] <= 1.0
  for latency in evaluation["latency"].values():
    assert latency["student_ms"] > 0 and latency["reaugkd_ms"] > 0


def test_report_has_the_command_rows_and_columns(smoke_run):
  workdir, paths, _ = smoke_run
  text = open(paths["md"]).read()
  assert "python -m experiments.reports.reaugkd --variant=smoke" in text
  for title in report.ROW_TITLES.values():
    assert f"| {title} |" in text
  with open(paths["csv"]) as f:
    rows = list(csv.reader(f))
  assert rows[0][0].startswith("# command: python -m experiments.reports.reaugkd")
  assert rows[1] == ["method", "rt", "average"]
  teacher = _stage_results(workdir, table.stage_name("rt", "teacher"))["accuracy"]
  assert rows[2][0] == "Teacher" and float(rows[2][1]) == pytest.approx(100 * teacher, abs=0.01)
  assert "overhead" in text and "ScaNN recall@k" in text


def test_every_variant_validates_and_has_the_rows():
  for variant in ("smoke", "cpu", "cpu_scratch", "paper"):
    config = table.get_config(variant)
    stages = dict(config_lib.validate_stages(config))
    for task in table.tasks(variant):
      for row in table.ROWS:
        assert table.stage_name(task, row) in stages
  cpu = table.get_config("cpu").stages
  assert cpu.rt_teacher.model_kwargs.init_from == "minilm"
  assert cpu.rt_reaugkd.model_kwargs.num_layers == 3
  assert tuple(cpu.bbc_kd.model_kwargs.init_layers) == (0, 2, 4)
  assert table.get_config("cpu_scratch").stages.rt_ce.model_kwargs.init_from == "scratch"
  assert table.get_config("paper").stages.mnli_teacher.dataset == "glue/mnli"
  assert table.validation_split("cpu", "bbc") == "validation"
  with pytest.raises(ValueError, match="variants"):
    table.get_config("gpu")


def test_student_from_teacher_layers_copies_minilm_weights():
  from kd_jax.models import bert, pretrained_bert
  _, minilm = bert.load_hf_bert(bert.minilm_directory())
  model = pretrained_bert.bert_classifier(3, num_layers=2, init_from="minilm", init_layers=(1, 4))
  variables = model.init({"params": jax.random.key(0)}, jnp.zeros((2, 8), jnp.int32),
                         train=False)
  for new, old in (("layer_0", "layer_1"), ("layer_1", "layer_4"),
                   ("word_embeddings", "word_embeddings")):
    for a, b in zip(jax.tree.leaves(variables["params"][new]),
                    jax.tree.leaves(minilm["params"][old])):
      np.testing.assert_array_equal(a, b)
  assert variables["params"]["classifier"]["kernel"].shape == (384, 3)
  with pytest.raises(ValueError, match="init_layers"):
    pretrained_bert.bert_classifier(2, num_layers=2, init_from="minilm", init_layers=(0, 9))
  with pytest.raises(ValueError, match="init_from is empty"):
    pretrained_bert.bert_classifier(2, init_from="")


def test_scann_backend_with_one_leaf_and_full_reorder_equals_exact_search(smoke_run):
  workdir, _, exact = smoke_run
  stage = table.stage_name("rt", "reaugkd")
  stage_config = report._resolve(dict(config_lib.validate_stages(table.get_config("smoke")))[stage],
                                 workdir)
  # One leaf and a reorder over the whole KB make ScaNN exact, so every number must agree.
  stage_config.method.search_backend = "scann"
  stage_config.method.scann_num_leaves = 1
  stage_config.method.scann_reorder = 200
  scann = report.evaluate_reaugkd(stage_config, os.path.join(workdir, stage), "validation")
  assert scann["search_backend"] == "scann" and scann["scann_recall"] == pytest.approx(1.0)
  assert scann["validation_by_beta"] == pytest.approx(exact["validation_by_beta"], abs=1e-9)
  assert scann["test_accuracy"] == pytest.approx(exact["test_accuracy"], abs=1e-9)
