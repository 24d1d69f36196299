"""The benchmarks at their smoke sizes, so that an engine change that breaks one fails `make test`.

benchmarks/gpu_run.sh runs once at PRESET=smoke, as the accelerator session would run it
(train_step.py, hlo_report.py and retrieval.py, each in its own process); data_pipeline.py runs
once at its smoke preset. A benchmark that raises, a part of gpu_run.sh that fails, or a kd_jax
row that reports "failed" fails a test here. PyTorch and FAISS are benchmark-only extras: when
they are absent their columns are skipped with a printed note (checked below), never the kd_jax
rows.
"""

import importlib.util
import os
import pathlib
import re
import subprocess
import sys

import pytest

from benchmarks import data_pipeline
from benchmarks import step_cases
from benchmarks import train_step
from tests import system_data

REPO = pathlib.Path(__file__).resolve().parents[2]
MS = re.compile(r"^\d+\.\d ms$")


def table(text: str, first_header: str) -> list[dict[str, str]]:
  """The Markdown table whose header row starts with `first_header`, as {column: cell} rows."""
  lines = text.splitlines()
  start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
  cells = lambda line: [c.strip() for c in line.strip().strip("|").split("|")]
  header = cells(lines[start])
  rows = []
  for line in lines[start + 2 :]:
    if not line.startswith("|"):
      break
    rows.append(dict(zip(header, cells(line))))
  return rows


def run_gpu_script(out: pathlib.Path, python: str, cache: pathlib.Path):
  env = {
      **os.environ,
      "PYTHON": python,
      "PRESET": "smoke",
      "NO_WHEELS": "1",
      "OUT": str(out),
      # The parts are separate processes; with a persistent cache the later ones reuse the
      # earlier ones' compilations (`make test` sets one for the whole suite).
      "JAX_COMPILATION_CACHE_DIR": os.environ.get("JAX_COMPILATION_CACHE_DIR") or str(cache),
  }
  return subprocess.run(
      ["bash", "benchmarks/gpu_run.sh"], cwd=REPO, env=env, capture_output=True, text=True
  )


@pytest.fixture(scope="module")
def gpu_run(tmp_path_factory):
  out = tmp_path_factory.mktemp("gpu_run")
  done = run_gpu_script(out, sys.executable, tmp_path_factory.mktemp("jax_cache"))
  return out, done.stdout + done.stderr, done.returncode


def test_gpu_run_smoke_passes(gpu_run):
  _, log, returncode = gpu_run
  assert returncode == 0 and "!!" not in log, log[-8000:]


def test_train_step_smoke_times_every_kd_jax_runner(gpu_run):
  out, log, _ = gpu_run
  smoke = step_cases.PRESETS["smoke"]
  expected = {
      # Part 1: every case, every kd_jax runner (cuDNN attention only on an NVIDIA GPU).
      "train_step_gpu.md": ([c.label for c in smoke], train_step.KD_JAX_RUNNERS[:3]),
      # Part 2, the bf16 diagnosis under other XLA settings: the BERT step only.
      "train_step_gpu_rbg.md": ([c.label for c in smoke if c.case == "bert"], ("kd_jax",)),
      "train_step_gpu_no_triton_gemm.md": (
          [c.label for c in smoke if c.case == "bert"],
          ("kd_jax",),
      ),
  }
  for name, (labels, runners) in expected.items():
    assert (out / name).exists(), f"{name} was not written:\n{log[-4000:]}"
    rows = table((out / name).read_text(), "step")
    assert [r["step"] for r in rows] == labels, name
    for row in rows:
      for runner in runners:
        assert MS.match(row[runner]), f"{name}, {row['step']}, {runner}: {row[runner]!r}"
  if importlib.util.find_spec("torch") is None:
    assert "PyTorch is not installed: the torch eager / torch.compile columns are skipped" in log


def test_hlo_report_lowers_the_three_variants(gpu_run):
  out, log, _ = gpu_run
  assert (out / "bf16_hlo_gpu.md").exists(), log[-4000:]
  rows = table((out / "bf16_hlo_gpu.md").read_text(), "variant")
  assert [r["variant"].split(",")[0] for r in rows] == ["float32", "bfloat16", "bfloat16"]
  dots = [r["dot_general types (count)"] for r in rows]
  assert "f32×f32→f32" in dots[0] and "bf16" not in dots[0]
  assert "bf16×bf16→bf16" in dots[1] and "bf16×bf16→bf16" in dots[2]


def test_retrieval_compares_exact_search_and_the_indexes(gpu_run):
  out, log, _ = gpu_run
  text = (out / "retrieval_gpu.md").read_text()
  (exact,) = table(text, "database")
  assert exact["database"] == "5,000" and exact["agreement"] == "1.000"
  assert re.match(r"^\d+\.\d\d×$", exact["kd_jax / plain"])
  indexes = table(text, "search")
  assert indexes[0]["search"] == "kd_jax exact_top_k" and indexes[0]["recall@10"] == "1.000"
  assert sum(r["search"] == "ScaNN via kd_jax.retrieval" for r in indexes) == 3
  if importlib.util.find_spec("faiss") is None:
    assert "FAISS is not installed: its rows are skipped" in log


def test_a_failing_kd_jax_runner_fails_the_train_step_benchmark(capsys):
  def broken(steps):
    raise TypeError("TrainStep.__call__() missing 1 required positional argument: 'batch'")

  timed = lambda steps: 0.01 * steps
  result = train_step.measure(
      {"kd_jax": broken, "torch eager": timed}, warmup=1, windows=1, steps=1
  )
  assert result["kd_jax"].startswith("failed: TypeError")
  assert train_step.kd_jax_failures([("a step", "bfloat16", result)]) == ["a step bfloat16 kd_jax"]
  torch_failed = train_step.measure(
      {"kd_jax": timed, "torch eager": broken}, warmup=1, windows=1, steps=1
  )
  assert train_step.kd_jax_failures([("a step", "bfloat16", torch_failed)]) == []
  with pytest.raises(SystemExit):
    train_step.main(["--runners=kd_jax,jax"])
  assert "--runners: unknown ['jax']" in capsys.readouterr().err


def test_gpu_run_exits_with_1_when_a_part_fails(tmp_path):
  """Every part still runs (a time-limited accelerator call keeps what it can), then status 1."""
  python = tmp_path / "python"
  python.write_text(
      "#!/bin/sh\n"
      f'[ "$1" = -c ] && exec "{sys.executable}" "$@"  # the version check works\n'
      "echo 'this benchmark fails on purpose' >&2\n"
      "exit 3\n"
  )
  python.chmod(0o755)
  done = run_gpu_script(tmp_path / "out", str(python), tmp_path / "cache")
  log = done.stdout + done.stderr
  assert done.returncode == 1, log
  assert log.count("!! exit 3") == 5 and "!! 5 part(s) failed" in log, log


needs_sonic_pi = system_data.needs(
    "sonic-pi-samples",
    system_data.find(
        "sonic-pi-samples", "/misc_crow.flac", "/usr/share/sonic-pi/samples/misc_crow.flac"
    )
    is not None,
)


@needs_sonic_pi
def test_data_pipeline_smoke(tmp_path, capsys):
  out = tmp_path / "data_pipeline.md"
  data_pipeline.main(
      ["--preset=smoke", "--num_batches=2", f"--data_dir={tmp_path / 'tfds'}", f"--out={out}"]
  )
  rows = table(out.read_text(), "data")
  assert [r["data"] for r in rows] == ["image", "text", "audio"]
  for row in rows:
    assert float(row["train batches/s (grain)"]) > 0 and float(row["eval batches/s (grain)"]) > 0
  if importlib.util.find_spec("torch") is None:
    assert (
        "PyTorch is not installed: the torch DataLoader column is skipped"
        in capsys.readouterr().out
    )
