"""The ReAugKD table end to end at smoke size, on real Rotten Tomatoes text with a tiny BERT.

One generic path (`experiments.tables.reproduce`): teacher stage (best validation state) → CE /
KD / RKD / ReAugKD students for two seeds (KD, RKD, ReAugKD through the shared teacher cache), the
ReAugKD knowledge base built by the method's `prepare` (constants), β chosen on validation by one
evaluator and applied to test by another → Markdown (validation headroom, the no-retrieval and
retrieval-only rows) + CSV + plot with training curves.
"""

import csv
import glob
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
from kd_jax.train import forward as forward_lib
from kd_jax.train import staged_config
from kd_jax.train import writers
from tests.notebooks import runner

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
  config = dict(staged_config.validate_stages(table.get_config("smoke"), resolve=False))[stage]
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
  assert 0.0 <= test[report.BETA_ONE] <= 1.0  # the retrieval-only row reads β = 1
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
  # The final evaluations read the state of the best validation accuracy (model selection).
  best_step, state = checkpoint_lib.restore_latest_state(os.path.join(stage_dir, "best"))
  assert best_step == _stage_results(workdir, STAGE)["model_selection"]["step"]
  manifest = json.load(open(os.path.join(stage_dir, "constants", "manifest.json")))
  constants = constants_lib.load(stage_dir, manifest["fingerprint"])
  test = _stage_results(workdir, STAGE)["evals"]["test_reaug"]
  forward = forward_lib.Forward(student, (), jnp.float32)
  betas = jnp.asarray([test["beta"], 1.0])
  correct, total = np.zeros(2), 0
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
        beta=betas,
    )
    keep = batch["mask"]
    hits = np.argmax(np.asarray(probs), -1) == batch["label"][None]
    correct += np.sum(hits[:, keep], axis=1)
    total += int(keep.sum())
  assert total == 100
  assert test["accuracy"] == pytest.approx(correct[0] / total, abs=1e-9)
  # β = 1: the knowledge base's prediction alone, the report's retrieval-only row.
  assert test[report.BETA_ONE] == pytest.approx(correct[1] / total, abs=1e-9)


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
  # The rows the brief adds: β = 0 (the student's own head) and β = 1 (the KB alone).
  for row, key in (("retrieval_only", report.BETA_ONE), ("reaugkd_no_retrieval", "accuracy")):
    got = [float(r[3]) for r in rows[2:] if r[0] == report.ROW_TITLES[row] and r[1] == "rt"]
    want = []
    for seed in table.seeds("smoke"):
      result = _stage_results(workdir, table.stage_name("rt", "reaugkd", seed))
      want.append(100 * (result["evals"]["test_reaug"] if key != "accuracy" else result)[key])
    assert got == pytest.approx(want, abs=0.01), row


def test_report_prints_the_validation_headroom(smoke_run):
  workdir, paths = smoke_run
  text = open(paths["md"]).read()
  teacher = _stage_results(workdir, table.stage_name("rt", "teacher"))["evals"]["validation"]
  ce = [
      _stage_results(workdir, table.stage_name("rt", "ce", s))["evals"]["validation"]["accuracy"]
      for s in table.seeds("smoke")
  ]
  gap = 100 * (teacher["accuracy"] - np.mean(ce))
  assert "## Validation headroom" in text
  row = next(line for line in text.splitlines() if line.startswith("| rt | "))
  cells = [c.strip() for c in row.strip("|").split("|")]
  assert float(cells[1]) == pytest.approx(100 * teacher["accuracy"], abs=0.006)
  assert float(cells[3]) == pytest.approx(gap, abs=0.006)
  assert cells[4] == ("yes" if gap >= report.HEADROOM_POINTS else "NO")


def test_students_read_the_teachers_best_validation_state(smoke_run):
  workdir, _ = smoke_run
  teacher = _stage_results(workdir, table.stage_name("rt", "teacher"))
  best = teacher["model_selection"]["step"]
  assert best in (4, 8)  # periodic validation every 4 of 12 steps; the last step is no candidate
  step, _ = checkpoint_lib.restore_exported_variables(
      os.path.join(workdir, table.teacher_workdir("rt"))
  )
  assert step == best
  # Every cached teacher pass (KD, RKD, ReAugKD outputs) ran with that state.
  cache = os.path.join(workdir, "teacher_cache_shared")
  manifests = glob.glob(os.path.join(cache, "**", "manifest.json"), recursive=True)
  assert len(manifests) >= 2  # KD reads logits only, ReAugKD logits and embeddings
  for path in manifests:
    fingerprint = json.load(open(path))["fingerprint"]
    assert [t["step"] for t in fingerprint["teachers"]] == [best]


def test_training_curves_average_the_seeds_metrics(smoke_run):
  workdir, _ = smoke_run
  curves = report.training_curves("smoke", workdir)
  ce = curves["rt"]["ce"]
  # Validation every 2 of 6 steps, the last state's included (it competes in model selection); the
  # final evaluation of the chosen state is left out.
  assert ce["val_steps"] == [2, 4, 6]
  logs = [
      writers.read_metrics(os.path.join(workdir, table.stage_name("rt", "ce", s)))
      for s in table.seeds("smoke")
  ]
  for step, value in zip(ce["val_steps"], ce["val_accuracy"]):
    per_seed = [
        next(r["accuracy"] for r in log if r["split"] == "validation" and r["step"] == step)
        for log in logs
    ]
    assert value == pytest.approx(np.mean(per_seed))
  assert ce["train_steps"] and len(ce["train_ce"]) == len(ce["train_steps"])
  assert all(np.isfinite(ce["train_ce"]))
  assert curves["rt"]["teacher"]["val_steps"] == [4, 8, 12]
  assert set(curves["rt"]) == {"teacher", "ce", "kd", "rkd", "reaugkd"}


def test_every_variant_validates_and_has_the_rows():
  for variant in ("smoke", "cpu", "paper"):
    config = table.get_config(variant)
    # The paper variant's GLUE data and BERT-base are not available offline: schema only.
    stages = dict(staged_config.validate_stages(config, resolve=variant != "paper"))
    for task in table.tasks(variant):
      assert table.stage_name(task, "teacher") in stages
      for seed in table.seeds(variant):
        for row in table.STUDENT_ROWS:
          stage = stages[table.stage_name(task, row, seed)]
          assert stage.teachers[0].workdir == table.teacher_workdir(task)
          assert stage.model_selection.evaluator == "validation"
  cpu = table.get_config("cpu").stages
  assert table.tasks("cpu") == ("rt", "bbc_title")
  assert cpu.rt_teacher.model_kwargs.init_from == "minilm"
  assert cpu.rt_teacher.model_selection.metric == "accuracy"
  assert cpu.bbc_title_teacher.dataset == "bbc_news"
  # The title task tokenises the headline, not the article.
  assert cpu.bbc_title_ce_s0.train_transforms[0]["key"] == "title"
  student = cpu.rt_reaugkd_s0.model_kwargs
  assert student.init_from == "scratch" and student.num_layers == 1
  # The paper projects the teacher to the student's width: no map on the student side.
  assert cpu.rt_reaugkd_s0.method.projection_dim == student.hidden_size
  assert cpu.rt_kd_s1.teacher_cache and not cpu.rt_ce_s1.teacher_cache
  # Rotten Tomatoes students learn from 2 000 labels (the teacher from all), several epochs.
  assert cpu.rt_teacher.train_split == "train" and cpu.rt_kd_s0.train_split == "train[:2000]"
  assert cpu.rt_ce_s0.total_steps * cpu.rt_ce_s0.batch_size >= 3 * 2_000
  assert cpu.bbc_title_ce_s0.train_split == "train"
  assert len(table.seeds("cpu")) == 3
  assert table.get_config("paper").stages.mnli_teacher.dataset == "glue/mnli"
  with pytest.raises(ValueError, match="variants"):
    table.get_config("cpu_scratch")


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


@pytest.mark.slow
def test_notebook_runs_on_the_smoke_stages(smoke_run, tmp_path, monkeypatch):
  """notebooks/reaugkd.ipynb at its small size on a copy of this smoke run's stages: every cell
  runs, and the stages it shares with the table are not trained again."""
  workdir = smoke_run[0]
  runner.copy_stages(workdir, str(tmp_path / "reaugkd_small"))
  output = runner.execute("reaugkd.ipynb", tmp_path, monkeypatch)
  runner.assert_reused(output)
