"""The "stage k/n (elapsed, about ... left)" estimate of a staged run (kd_jax.train.stages)."""

from kd_jax.train import stages


def test_estimate_is_the_finished_stages_time_per_step(monkeypatch):
  now = [100.0]
  monkeypatch.setattr(stages.time, "time", lambda: now[0])
  clock = stages._StageClock([19, 29, 0, 59])  # pylint: disable=protected-access
  assert clock.estimate() == ""  # nothing has run yet
  now[0] += 60.0  # stage 1: 19 steps (+1 for build and evaluation) in a minute, 3 s per step
  clock.finished(ran=True)
  assert clock.estimate() == " (1m 00s elapsed, about 4m 33s left)"  # (30 + 1 + 60) x 3 s
  now[0] += 2.0  # stage 2 was already complete: it says nothing about the speed
  clock.finished(ran=False)
  assert clock.estimate() == " (1m 02s elapsed, about 3m 03s left)"
  now[0] += 7.0  # stage 3 evaluated a model as built (0 steps) in 7 s
  clock.finished(ran=True)
  assert clock.estimate() == " (1m 09s elapsed, about 3m 11s left)"  # 67 s / 21 x 60


def test_an_already_complete_start_gives_no_rate_yet(monkeypatch):
  now = [0.0]
  monkeypatch.setattr(stages.time, "time", lambda: now[0])
  clock = stages._StageClock([10, 10])  # pylint: disable=protected-access
  now[0] += 1.0
  clock.finished(ran=False)
  assert clock.estimate() == " (1s elapsed)"
  assert stages._duration(3 * 3600 + 125) == "3h 02m"  # pylint: disable=protected-access
