"""The "stage k/n (elapsed, about ... left)" estimate of a staged run (kd_jax.train.stages)."""

from kd_jax.train import stages


def test_estimate_times_training_stages_per_step_and_evaluations_per_stage(monkeypatch):
  now = [100.0]
  monkeypatch.setattr(stages.time, "time", lambda: now[0])
  clock = stages._StageClock([20, 30, 0, 60, 0])  # pylint: disable=protected-access
  assert clock.estimate() == ""  # nothing has run yet
  now[0] += 60.0  # stage 1: 20 steps in a minute, 3 s per step
  clock.finished(ran=True)
  # 90 steps left at 3 s; the two 0-step stages: none timed yet, so no estimate.
  assert clock.estimate() == " (1m 00s elapsed)"
  now[0] += 2.0  # stage 2 was already complete: it says nothing about the speed
  clock.finished(ran=False)
  assert clock.estimate() == " (1m 02s elapsed)"
  now[0] += 600.0  # stage 3 evaluated a model as built (0 steps) for ten minutes
  clock.finished(ran=True)
  # 60 steps x 3 s + one 0-step stage x 600 s; the slow evaluation does not inflate the steps.
  assert clock.estimate() == " (11m 02s elapsed, about 13m 00s left)"
  now[0] += 60.0  # stage 4: 60 steps in a minute; rate now 120 s / 80 steps
  clock.finished(ran=True)
  assert clock.estimate() == " (12m 02s elapsed, about 10m 00s left)"


def test_a_table_that_starts_with_its_teacher_row_gets_a_sane_estimate(monkeypatch):
  now = [0.0]
  monkeypatch.setattr(stages.time, "time", lambda: now[0])
  clock = stages._StageClock([0] + [805] * 35)  # pylint: disable=protected-access
  now[0] += 600.0
  clock.finished(ran=True)
  assert clock.estimate() == " (10m 00s elapsed)"  # no training stage timed yet
  now[0] += 120.0
  clock.finished(ran=True)
  assert clock.estimate() == " (12m 00s elapsed, about 1h 08m left)"  # 34 x 2 min


def test_an_already_complete_start_gives_no_rate_yet(monkeypatch):
  now = [0.0]
  monkeypatch.setattr(stages.time, "time", lambda: now[0])
  clock = stages._StageClock([10, 10])  # pylint: disable=protected-access
  now[0] += 1.0
  clock.finished(ran=False)
  assert clock.estimate() == " (1s elapsed)"
  assert stages._duration(3 * 3600 + 125) == "3h 02m"  # pylint: disable=protected-access
