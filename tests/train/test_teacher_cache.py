"""The teacher cache is shared by the runs whose teachers' outputs are the same, and only by them.

End to end, a staged config of tiny runs: two students that differ in everything but the teacher
and the data compute the teacher's outputs once and train as they would on a cache of their own;
a student of another teacher gets another entry; a rerun resumes on the shared entry. The rest
pins the key (what changes it and what must not) and the storage: a corrupt or foreign entry is
refused in one line, a writer killed before its rename leaves nothing a later run trusts, and only
the writing process publishes.
"""

import json
import os
import subprocess
import sys
import textwrap

import ml_collections
import numpy as np
import pytest

from kd_jax.train import constants as constants_lib
from kd_jax.train import loop
from kd_jax.train import stages
from kd_jax.train import teacher_cache
from kd_jax.train import writers
from tests.train import helpers
from tests.train import test_pretrained_teacher

PRETRAINED = {"model": test_pretrained_teacher.PRETRAINED, "pretrained": True}
TRAINED = {
    "model": "tests.train.helpers:TinyCNN",
    "workdir": "teacher",
    "model_kwargs": {"width": 8},
}


@pytest.fixture
def computed(monkeypatch):
  """The list of passes of the teachers over the train split made while the test runs."""
  calls = []
  real = teacher_cache.compute

  def counting(*args, **kwargs):
    calls.append(1)
    return real(*args, **kwargs)

  monkeypatch.setattr(teacher_cache, "compute", counting)
  return calls


def _student(teacher, *, seed=0, width=8, temperature=2.0, learning_rate=0.05, **overrides):
  c = helpers.tiny_config(
      total_steps=3,
      checkpoint_every=3,
      seed=seed,
      teacher_cache=True,
      train_transforms=("NormalizeImage",),
      eval_transforms=("NormalizeImage",),
      **overrides,
  )
  c.model_kwargs = ml_collections.ConfigDict({"width": width})
  c.optimizer.learning_rate = learning_rate
  c.method = ml_collections.ConfigDict({"name": "vanilla_kd", "temperature": temperature})
  c.teachers = (ml_collections.ConfigDict(teacher),)
  return c


def _entries(cache_dir) -> list[str]:
  return sorted(p.name for p in cache_dir.iterdir() if not p.name.startswith("."))


def _losses(workdir) -> list[float]:
  return [r["loss"] for r in writers.read_metrics(str(workdir)) if r["split"] == "train"]


def test_stages_share_one_entry_per_teacher_and_train_as_with_their_own(tmp_path, computed):
  other = dict(seed=1, width=6, temperature=4.0, learning_rate=0.02, batch_size=16)
  config = ml_collections.ConfigDict(
      {
          "stages": {
              "a": _student(PRETRAINED),
              "b": _student(PRETRAINED, **other),  # another student, seed, method, batch
              "teacher": helpers.tiny_config(total_steps=2, checkpoint_every=2),
              "c": _student(TRAINED),  # another teacher
          },
          "stage_order": ("a", "b", "teacher", "c"),
      }
  )
  staged = tmp_path / "staged"
  results = stages.run(config, str(staged))
  shared = staged / stages.SHARED_TEACHER_CACHE
  assert len(computed) == 2, "b should have loaded a's entry"
  assert len(_entries(shared)) == 2
  assert not (staged / "a" / teacher_cache.NAME).exists()

  # b on a cache of its own (the per-run default) computes the same entry and trains the same.
  loop.train_and_evaluate(_student(PRETRAINED, **other), str(tmp_path / "alone"))
  assert len(computed) == 3
  assert _entries(tmp_path / "alone" / teacher_cache.NAME)[0] in _entries(shared)
  assert _losses(tmp_path / "alone") == _losses(staged / "b")
  assert _losses(staged / "b") != _losses(staged / "a")

  # Rerun: every stage is finished and loads the shared entry (its config.json names the
  # directory; where a memo lives is not part of the resume comparison).
  with open(staged / "b" / "config.json") as f:
    assert json.load(f)["teacher_cache_dir"] == str(shared)
  assert stages.run(config, str(staged)) == results
  assert len(computed) == 3
  # A workdir saved before `teacher_cache_dir` existed resumes too.
  with open(tmp_path / "alone" / "config.json") as f:
    saved = json.load(f)
  del saved["teacher_cache_dir"]
  with open(tmp_path / "alone" / "config.json", "w") as f:
    json.dump(saved, f)
  loop.train_and_evaluate(_student(PRETRAINED, **other), str(tmp_path / "alone"))
  assert len(computed) == 3


def _key(config, *, variables=None, step=3, outputs=("logits",), num_examples=512) -> str:
  variables = variables or {"params": {"w": np.ones(3, np.float32)}}
  fingerprint = teacher_cache.fingerprint(config, (variables,), (step,), outputs, num_examples)
  return teacher_cache.key(fingerprint)


def _edited(edit):
  config = _student({**TRAINED, "workdir": "/runs/teacher"})
  edit(config)
  return config


SAME = {
    "seed": lambda c: c.update(seed=7),
    "student": lambda c: c.update(model="resnet20", model_kwargs={"width": 16}),
    "method": lambda c: c.update(method={"name": "vanilla_kd", "temperature": 9.0}),
    "optimizer": lambda c: c.optimizer.update(learning_rate=0.5, name="adam"),
    "train batch, steps": lambda c: c.update(batch_size=8, total_steps=99, checkpoint_every=9),
    "eval transforms": lambda c: c.update(eval_transforms=()),
    "cache dir": lambda c: c.update(teacher_cache_dir="/elsewhere"),
    "teacher moved": lambda c: c.update(teachers=({**TRAINED, "workdir": "/moved/teacher"},)),
}
DIFFERENT = {
    "teacher net": lambda c: c.update(teachers=({**TRAINED, "model_kwargs": {"width": 6}},)),
    "dtype": lambda c: c.update(compute_dtype="bfloat16"),
    "train transforms": lambda c: c.update(train_transforms=()),
    "dataset": lambda c: c.update(dataset="mnist5k"),
    "split": lambda c: c.update(train_split="validation"),
    "input": lambda c: c.update(input_key="pixels"),
    "pass batch": lambda c: c.update(eval_batch_size=32),
    "classes": lambda c: c.update(num_classes=5),
}


@pytest.mark.parametrize("edit", SAME.values(), ids=SAME.keys())
def test_the_key_ignores_what_the_teachers_outputs_do_not_depend_on(edit):
  assert _key(_edited(edit)) == _key(_edited(lambda c: None))


@pytest.mark.parametrize("edit", DIFFERENT.values(), ids=DIFFERENT.keys())
def test_the_key_follows_the_teachers_and_the_data(edit):
  assert _key(_edited(edit)) != _key(_edited(lambda c: None))


def test_the_key_follows_checkpoint_weights_max_length_and_outputs():
  base = _edited(lambda c: None)
  assert _key(base, step=4) != _key(base)
  assert _key(base, variables={"params": {"w": np.full(3, 2, np.float32)}}) != _key(base)
  assert _key(base, outputs=("embedding", "logits")) != _key(base)
  assert _key(base, num_examples=511) != _key(base)
  tokenize = lambda n: lambda c: c.update(
      train_transforms=({"name": "Tokenize", "max_length": n},), input_key="input_ids"
  )
  assert _key(_edited(tokenize(16))) != _key(_edited(tokenize(32)))


FINGERPRINT = {"version": teacher_cache.VERSION, "teachers": [{"step": 1}]}
OUTPUTS = {"0/logits": np.arange(12, dtype=np.float32).reshape(4, 3)}


def _never():
  raise AssertionError("the outputs were recomputed over an existing entry")


def _flip_last_bytes(path, count=4):
  data = bytearray(path.read_bytes())
  data[-count:] = bytes(b ^ 0xFF for b in data[-count:])  # array data: still parses
  path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda e: _flip_last_bytes(e / constants_lib.ARRAYS_FILE), "fails its SHA-256 check"),
        (
            lambda e: (e / constants_lib.MANIFEST_FILE).write_text(
                (e / constants_lib.MANIFEST_FILE).read_text().replace('"step": 1', '"step": 2')
            ),
            r"prepared for a different run \(differs in \['teachers'\]",
        ),
        (lambda e: os.remove(e / constants_lib.MANIFEST_FILE), "Cannot read .*manifest.json"),
    ],
    ids=["flipped bytes", "foreign fingerprint", "no manifest"],
)
def test_a_damaged_entry_is_refused_in_one_line(tmp_path, damage, message):
  cache = teacher_cache.load_or_compute(str(tmp_path), FINGERPRINT, lambda: OUTPUTS, save=True)
  np.testing.assert_array_equal(cache["0"]["logits"], OUTPUTS["0/logits"])
  reloaded = teacher_cache.load_or_compute(str(tmp_path), FINGERPRINT, _never, save=True)
  np.testing.assert_array_equal(reloaded["0"]["logits"], OUTPUTS["0/logits"])
  damage(tmp_path / teacher_cache.key(FINGERPRINT))
  with pytest.raises(
      constants_lib.ConstantsError, match="^Teacher cache refused: .*" + message
  ) as info:
    teacher_cache.load_or_compute(str(tmp_path), FINGERPRINT, _never, save=True)
  assert "\n" not in str(info.value)


_KILLED_WRITER = """
import os, sys
import numpy as np
from kd_jax.train import constants, teacher_cache

real_save = constants.save
def save_then_die(*args, **kwargs):  # killed after writing everything but before the rename
  real_save(*args, **kwargs)
  os._exit(9)
constants.save = save_then_die
teacher_cache.load_or_compute(
    sys.argv[1], {fingerprint!r}, lambda: {{"0/logits": np.zeros((4, 3), np.float32)}}, save=True
)
"""


def test_a_killed_writer_leaves_nothing_a_later_run_trusts(tmp_path):
  script = textwrap.dedent(_KILLED_WRITER.format(fingerprint=FINGERPRINT))
  killed = subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=False)
  assert killed.returncode == 9
  entry = teacher_cache.key(FINGERPRINT)
  leftovers = [p.name for p in tmp_path.iterdir()]
  assert len(leftovers) == 1 and leftovers[0].startswith(f".{entry}.tmp-"), leftovers
  # Also a writer killed half-way through the arrays.
  (tmp_path / f".{entry}.tmp-1-0").mkdir()
  (tmp_path / f".{entry}.tmp-1-0" / constants_lib.ARRAYS_FILE).write_bytes(b"\x00" * 5)
  cache = teacher_cache.load_or_compute(str(tmp_path), FINGERPRINT, lambda: OUTPUTS, save=True)
  np.testing.assert_array_equal(cache["0"]["logits"], OUTPUTS["0/logits"])  # not the zeros
  assert _entries(tmp_path) == [entry]
  reloaded = teacher_cache.load_or_compute(str(tmp_path), FINGERPRINT, _never, save=True)
  np.testing.assert_array_equal(reloaded["0"]["logits"], OUTPUTS["0/logits"])


def test_only_the_writing_process_publishes_and_a_second_writer_defers(tmp_path):
  teacher_cache.load_or_compute(str(tmp_path / "c"), FINGERPRINT, lambda: OUTPUTS, save=False)
  assert not (tmp_path / "c").exists()
  entry = teacher_cache.key(FINGERPRINT)
  for _ in range(2):  # the second rename finds the entry in place: kept, no temporary left
    teacher_cache._publish(str(tmp_path / "c"), entry, OUTPUTS, FINGERPRINT)  # pylint: disable=protected-access
  assert [p.name for p in (tmp_path / "c").iterdir()] == [entry]
