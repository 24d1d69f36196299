"""The README's "Your own data" and "Predict and evaluate" sections, followed as written.

The commands are read from README.md itself; only three things change: the config runs at its
`smoke` size, the workdir is a temporary one, and reviews.csv is a file this test writes (three
classes named by strings, so the label mapping is exercised end to end).
"""

import csv
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
  command = (
      command.replace("\\\n", " ")
      .replace("text_kd.py ", "text_kd.py:smoke ")
      .replace("/tmp/reviews_kd", workdir)
      .replace("csv:reviews.csv", f"csv:{csv_path}")
      .replace("python -m", f"{sys.executable} -m")
  )
  done = subprocess.run(command, shell=True, cwd=REPO, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  return done.stdout


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
