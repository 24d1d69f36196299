"""The README's "Your own data" and "Predict and evaluate" sections, followed as written.

The commands are read from README.md itself; only three things change: the config runs at its
`smoke` size, the workdir is a temporary one, and reviews.csv is a file this test writes (three
classes named by strings, so the label mapping is exercised end to end). The same command trains
from the file gzip- and bzip2-compressed (same shapes: the compiled programs are reused), ends
with the results table (and JSON with --json), and prints no orbax "read only" warning when the
students restore their teacher.
"""

import bz2
import csv
import gzip
import json
import os
import re
import subprocess
import sys

import pytest

from experiments.reports import text_kd as text_kd_report

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORDS = {
    "pos": ("gripping", "lovely", "superb", "moving"),
    "neg": ("dull", "tedious", "awful", "boring"),
    "neutral": ("average", "passable", "ordinary", "plain"),
}


def readme_blocks(section: str) -> list[tuple[str, str]]:
  """(language, code) of the fenced blocks under the README heading `section`."""
  with open(os.path.join(REPO, "README.md")) as f:
    text = f.read()
  start = text.index(f"### {section}\n")
  end = text.find("\n#", start + 4)
  return re.findall(r"```(\w+)\n(.*?)```", text[start : end if end > 0 else None], re.S)


def write_reviews(path):
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["review", "sentiment"])
    for i in range(240):
      label = ("pos", "neg", "neutral")[i % 3]
      words = WORDS[label]
      writer.writerow([f"a {words[i % 4]}, {words[(i // 4) % 4]} film", label])


def run(command: str, workdir: str, csv_path: str) -> str:
  return run_command(command, workdir, csv_path).stdout


def run_command(command: str, workdir: str, csv_path: str) -> subprocess.CompletedProcess:
  command = (
      command.replace("\\\n", " ")
      .replace("text_kd.py ", "text_kd.py:smoke ")
      .replace("/tmp/reviews_kd", workdir)
      .replace("csv:reviews.csv", f"csv:{csv_path}")
      .replace("python -m", f"{sys.executable} -m")
  )
  done = subprocess.run(command, shell=True, cwd=REPO, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  return done


@pytest.mark.slow
def test_own_data_then_evaluate_then_predict(tmp_path):
  csv_path, workdir = str(tmp_path / "reviews.csv"), str(tmp_path / "reviews_kd")
  write_reviews(csv_path)
  [(language, train)] = readme_blocks("Your own data")
  assert language == "bash" and "csv:reviews.csv?text=review&label=sentiment" in train
  run(train, workdir, csv_path)
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  assert set(results) == {"teacher", "student_kd", "student_ce"}
  assert 0 <= results["student_kd"]["agreement"] <= 1
  table = text_kd_report.report(workdir)
  assert "| student, distilled |" in table and "reviews.csv" in table

  (_, evaluate), (_, python) = readme_blocks("Predict and evaluate")
  lines = [
      json.loads(line)
      for line in run(evaluate, workdir, csv_path).splitlines()
      if line.startswith("{")
  ]
  assert [os.path.basename(line["run"]) for line in lines] == [
      "teacher",
      "student_kd",
      "student_ce",
  ]
  assert all(line["split"] == "validation" and line["count"] == 24 for line in lines)
  assert os.path.exists(os.path.join(workdir, "student_kd", "evaluations", "validation.json"))

  out = run(
      f"{sys.executable} -c '{python}'".replace("/tmp/reviews_kd", workdir), workdir, csv_path
  )
  predictions = eval(out.strip().splitlines()[-1])  # pylint: disable=eval-used  (a printed dict)
  assert set(predictions["name"]) <= {"neg", "neutral", "pos"} and len(predictions["label"]) == 2


def table_rows(out: str) -> dict[tuple[str, str], list[str]]:
  """{(stage, split): [accuracy, agreement, pred. KL]} of the end-of-run table in `out`."""
  lines = out.splitlines()
  start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["stage", "split"])
  rows = {}
  for line in lines[start + 1 :]:
    if line.startswith("results: "):
      return rows
    stage, split, *cells = line.split()
    rows[stage, split] = cells
  raise AssertionError(f"no 'results:' line after the table:\n{out[-2000:]}")


@pytest.mark.slow
@pytest.mark.parametrize("compression", ["gz", "bz2"])
def test_compressed_csv_trains_and_ends_with_a_table(tmp_path, compression):
  plain, workdir = tmp_path / "reviews.csv", str(tmp_path / "reviews_kd")
  write_reviews(plain)
  path = tmp_path / f"reviews.csv.{compression}"
  path.write_bytes({"gz": gzip.compress, "bz2": bz2.compress}[compression](plain.read_bytes()))
  [(_, train)] = readme_blocks("Your own data")
  done = run_command(train, workdir, str(path))
  assert "read only" not in (done.stdout + done.stderr).lower()  # students restore the teacher
  assert f"=== stage 1/3 teacher -> {workdir}/teacher" in done.stdout
  assert re.search(
      r"=== stage 3/3 student_ce -> \S+ \(\d+s elapsed, about \d+s left\)", done.stdout
  )
  assert done.stdout.rstrip().endswith(f"results: {workdir}/results.json")
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  rows = table_rows(done.stdout)
  assert set(rows) == {(s, p) for s in results for p in ("validation", "test")}
  assert rows["teacher", "test"] == [f"{results['teacher']['accuracy']:.1%}", "-", "-"]
  kd = results["student_kd"]
  assert rows["student_kd", "test"] == [
      f"{kd['accuracy']:.1%}",
      f"{kd['agreement']:.1%}",
      f"{kd['predictive_kl']:.4f}",
  ]
  if compression == "gz":  # a finished run only reports: --json prints results.json's content
    out = run(train.rstrip() + " --json", workdir, str(path))
    lines = out.splitlines()
    assert json.loads("\n".join(lines[lines.index("{") :])) == results
