"""The SEA tables end to end at smoke size, on the sources' "tiny" configs (real drum one-shots of
the task kits, soundscapes of the pool kits, Asterisk prompts, TimGM6mb notes, G's clips).

One generic path (`kd_jax.train.stages.run`, then the report): self-supervised teacher on G →
students in rows (a) SEA on T, (b) the teacher's way on G, (c) SEA on G → φ from each sampling
strategy → downstream cross-validation on the three tasks → Markdown + CSV + plot.
"""

import csv
import json
import os

import numpy as np
import pytest

from experiments import tables
from experiments.configs import sea as table
from experiments.reports import sea as report
from kd_jax.data import sea_audio
from kd_jax.data import sea_sources
from kd_jax.train import staged_config
from kd_jax.train import stages
from tests import system_data
from tests.notebooks import runner

# Every package the four sources read; a missing one fails under CI and skips locally.
PACKAGES = [
    pytest.mark.needs_data(
        package=p, available=bool(system_data.package_files(p)) or bool(sea_audio.dpkg_files(p))
    )
    for p in sea_sources.SEA_PACKAGES
]
pytestmark = PACKAGES


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("sea_work"))
  out_dir = str(tmp_path_factory.mktemp("sea_out"))
  config = table.get_config("smoke")
  stages.run(config, workdir)
  results = tables.load_stage_results(workdir, config.stage_order)
  paths = report.write_report(
      config, results, out_dir=out_dir, name="sea_smoke", command="smoke", variant="smoke"
  )
  return workdir, results, paths


def _manifest(workdir, stage):
  with open(os.path.join(workdir, stage, "constants", "manifest.json")) as f:
    return json.load(f)["arrays"]


def test_every_network_is_scored_on_every_task_at_its_final_or_best_checkpoint(smoke_run):
  _, results, _ = smoke_run
  s = table.settings("smoke")
  assert set(s["tasks"]) == {"drums", "gm_family", "language"}
  for stage, result in results.items():
    for task in s["tasks"]:
      scores = result["evals"][task]
      assert scores["folds"] == 5 and 0.0 <= scores["accuracy_mean"] <= 1.0, (stage, task)
    if stage == "teacher" or "_teacher_way_" in stage:  # self-supervised: no distillation
      validation = result["evals"]["validation"]
      assert 0.0 <= validation["crop_match"] <= 1.0 and validation["crop_nt_xent"] > 0.0
      assert "model_selection" not in result
    else:
      selection = result["model_selection"]
      assert selection["metric"] == "embedding_mse" and selection["mode"] == "min"
      assert result["evals"]["validation"]["embedding_mse"] == pytest.approx(selection["value"])


def test_rows_a_b_c_train_what_they_say():
  config = table.get_config("smoke")
  for student in table.settings("smoke")["students"]:
    a = config.stages[table.stage_name(student, "target", "random", 0)]
    b = config.stages[table.stage_name(student, "teacher_way", None, 0)]
    c = config.stages[table.stage_name(student, "general", "random", 0)]
    assert a.dataset.endswith("kit_pool_tiny") and a.method.name == "sea" and a.teachers
    assert c.dataset.endswith("general_tiny") and c.method.name == "sea" and c.teachers
    assert c.train_transforms == (table.CENTRE_SECOND,)
    # (b): the teacher's recipe on G, no teacher in the loss.
    assert b.method.name == config.stages["teacher"].method.name == table.SELF_SUPERVISED
    assert b.dataset == config.stages["teacher"].dataset and not b.teachers
    assert b.batch_transforms == config.stages["teacher"].batch_transforms == (table.TWO_CROPS,)
    assert b.model_kwargs.filters == a.model_kwargs.filters


def test_phi_has_the_student_width_and_each_strategy_its_own_sample(smoke_run):
  workdir, _, _ = smoke_run
  s = table.settings("smoke")
  teacher_width = s["teacher"]["filters"][-1]
  for student, spec in s["students"].items():
    for row in ("target", "general"):
      arrays = _manifest(workdir, table.stage_name(student, row, "random", 0))
      d = spec["dim"] or teacher_width
      assert arrays["components"]["shape"] == [d, teacher_width]
      assert arrays["sample_indices"]["shape"] == [s["sample_size"] if spec["dim"] else 0]
  samples = {}
  for sampling in table.STRATEGIES:
    stage = table.stage_name(s["sampling_student"], "target", sampling, 0)
    from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top

    constants = load_file(os.path.join(workdir, stage, "constants", "constants.safetensors"))
    picked = constants["sample_indices"]
    assert len(np.unique(picked)) == s["sample_size"]
    samples[sampling] = tuple(picked)
  assert len(set(samples.values())) > 1  # the strategies do not all draw the same sample


def test_report_has_every_row_and_states_the_claims(smoke_run):
  _, _, paths = smoke_run
  with open(paths["md"]) as f:
    text = f.read()
  s = table.settings("smoke")
  for student in s["students"]:
    assert f"| {student} |" in text
  for sampling in table.STRATEGIES:
    assert f"| {sampling} |" in text
  for task in s["tasks"]:
    for row in ("(a)", "(b)", "(c)"):
      assert f"{task} {row}" in text
  assert "(the paper's baseline)" in text and "AVC-trained" in text
  assert "Teacher (self-supervised on G)" in text
  for claim in ("Claim 1", "Claim 2", "Claim 3"):
    assert claim in text
  assert "One seed only" in text
  with open(paths["csv"]) as f:
    rows = list(csv.DictReader(f))
  expected = sum(len(table.student_rows("smoke", seed)) for seed in s["seeds"])
  assert len(rows) == expected
  assert {r["row"] for r in rows} == set(table.ROWS)
  assert all(r["validation_mse"] == "" for r in rows if r["row"] == "teacher_way")
  assert os.path.getsize(paths["png"]) > 0


@pytest.mark.parametrize("variant", ["cpu", "paper"])
def test_larger_variants_validate_and_keep_the_papers_geometry(variant):
  config = table.get_config(variant)
  validated = dict(staged_config.validate_stages(config, resolve=False))
  s = table.settings(variant)
  per_seed = [len(table.student_rows(variant, seed)) for seed in s["seeds"]]
  assert len(validated) == sum(per_seed) + (0 if variant == "paper" else 1)
  spec = s["students"]["student0"]
  mel = spec["mel"]
  # One second gives 50 frames, and the STFT bins are 7.8125 Hz apart, as at 8 kHz / 1024 / 160.
  assert -(-mel["sample_rate"] // mel["hop_length"]) == 50
  if variant == "paper":
    assert mel["sample_rate"] / mel["n_fft"] == 8000 / 1024
    assert [s["students"][k]["dim"] for k in s["students"]] == [0, 256, 128, 64]
    assert "teacher_way" not in s["rows"]  # L3's AVC training on AudioSet: not available
  else:
    assert s["rows"] == table.ROWS and len(s["seeds"]) == 3
    assert s["pools"]["target"]["dataset"].endswith("kit_pool_full")
    assert s["tasks"]["drums"]["dataset"].endswith("drums_full")
    assert set(s["other_tasks"]) == {"gm_family", "language"}


@pytest.mark.slow
def test_notebook_runs_on_the_smoke_stages(smoke_run, tmp_path, monkeypatch):
  """notebooks/sea.ipynb at its small size on a copy of this smoke run's stages: every cell runs,
  and the stages it shares with the table are not trained again."""
  workdir = smoke_run[0]
  runner.copy_stages(workdir, str(tmp_path / "sea_small"))
  output = runner.execute("sea.ipynb", tmp_path, monkeypatch)
  runner.assert_reused(output)
