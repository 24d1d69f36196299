"""grain pipelines on real MNIST-5k: determinism, exact resume, sharding, masked eval."""

import collections
import hashlib
import json

import numpy as np
import pytest

from kd_jax import data

AUGMENT = (data.PadCropFlip(padding=2), data.GaussianNoise(stddev=0.1, key="image"))


@pytest.fixture(scope="module")
def train_source(data_dir):
  return data.get_source("mnist5k", "train", data_dir=data_dir)


@pytest.fixture(scope="module")
def test_source(data_dir):
  return data.get_source("mnist5k", "test", data_dir=data_dir)


def _digests(images):
  return [hashlib.sha1(np.ascontiguousarray(x).tobytes()).hexdigest() for x in images]


def _take(iterator, n):
  return [next(iterator) for _ in range(n)]


def _same(batches_a, batches_b):
  return all(
      a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
      for a, b in zip(batches_a, batches_b, strict=True)
  )


def test_train_batches_have_fixed_shape_and_are_deterministic(train_source):
  make = lambda seed: data.train_loader(
      train_source, batch_size=16, seed=seed, transforms=AUGMENT, shard_index=0, shard_count=1
  )
  first = _take(make(0), 4)
  assert first[0]["image"].shape == (16, 28, 28, 1) and first[0]["image"].dtype == np.float32
  assert first[0]["label"].shape == (16,)
  assert _same(first, _take(make(0), 4))
  assert not np.array_equal(first[0]["image"], _take(make(1), 1)[0]["image"])


def test_restored_iterator_yields_exactly_the_uninterrupted_batches(train_source):
  kwargs = dict(batch_size=8, seed=3, transforms=AUGMENT, shard_index=0, shard_count=1)
  uninterrupted = data.train_loader(train_source, **kwargs)
  _take(uninterrupted, 5)
  state = json.loads(json.dumps(uninterrupted.get_state()))  # As a checkpoint stores it.
  expected = _take(uninterrupted, 6)
  restored = data.train_loader(train_source, **kwargs)
  _take(restored, 2)  # A different position, overwritten by set_state.
  restored.set_state(state)
  assert _same(expected, _take(restored, 6))


def test_one_epoch_visits_each_example_once_and_next_epoch_reshuffles(train_source):
  # 4000 train images / batch 100 = 40 batches per epoch (no augmentation: images identifiable).
  it = data.train_loader(train_source, batch_size=100, seed=0, shard_index=0, shard_count=1)
  epoch1 = [d for b in _take(it, 40) for d in _digests(b["image"])]
  epoch2 = [d for b in _take(it, 40) for d in _digests(b["image"])]
  all_images = _digests(train_source[i]["image"] for i in range(len(train_source)))
  assert sorted(epoch1) == sorted(all_images) == sorted(epoch2)
  assert epoch1 != epoch2
  assert epoch1 != all_images  # Shuffled, not the stored order.


def test_shards_are_disjoint_and_cover_the_source(train_source):
  seen = []
  for shard in range(2):
    it = data.train_loader(train_source, batch_size=100, seed=0, shard_index=shard, shard_count=2)
    seen.append(set(d for b in _take(it, 20) for d in _digests(b["image"])))
  assert len(seen[0]) == len(seen[1]) == 2000
  assert not seen[0] & seen[1]


def test_hosts_together_read_exactly_the_single_host_stream(train_source):
  """Two shards of 50 rows are, row for row, the one-host stream of 100 (augmentation too)."""
  one = data.train_loader(
      train_source, batch_size=100, seed=5, transforms=AUGMENT, shard_index=0, shard_count=1
  )
  hosts = [
      data.train_loader(
          train_source, batch_size=50, seed=5, transforms=AUGMENT, shard_index=i, shard_count=2
      )
      for i in range(2)
  ]
  for _ in range(3):
    together = np.concatenate([next(h)["image"] for h in hosts])
    np.testing.assert_array_equal(together, next(one)["image"])


def test_eval_batches_cover_every_example_once_with_mask(test_source):
  batches = list(data.eval_batches(test_source, batch_size=64, shard_index=0, shard_count=1))
  assert len(batches) == 8  # ceil(500 / 64)
  assert all(b["image"].shape == (64, 28, 28, 1) for b in batches)
  assert [int(b["mask"].sum()) for b in batches] == [64] * 7 + [500 - 7 * 64]
  assert not batches[-1]["mask"][500 - 7 * 64 :].any()
  labels = np.concatenate([b["label"][b["mask"]] for b in batches])
  expected = [int(test_source[i]["label"]) for i in range(len(test_source))]
  assert labels.tolist() == expected  # Ordered.


def test_sharded_eval_is_lockstep_and_loses_nothing(test_source):
  shards = [
      list(data.eval_batches(test_source, batch_size=48, shard_index=i, shard_count=3))
      for i in range(3)
  ]
  assert len({len(s) for s in shards}) == 1  # Same number of steps on every host.
  counted = collections.Counter()
  for shard in shards:
    for b in shard:
      counted.update(_digests(b["image"][b["mask"]]))
  assert sum(counted.values()) == 500 and set(counted.values()) == {1}


def test_bad_arguments_are_named(train_source):
  with pytest.raises(ValueError, match="batch_size"):
    data.train_loader(train_source, batch_size=0, seed=0, shard_index=0, shard_count=1)
  with pytest.raises(ValueError, match="shard_index"):
    data.train_loader(train_source, batch_size=4, seed=0, shard_index=2, shard_count=2)
  with pytest.raises(ValueError, match="both"):
    data.train_loader(train_source, batch_size=4, seed=0, shard_index=0)


def test_default_shard_is_this_jax_process(train_source):
  it = data.train_loader(train_source, batch_size=100, seed=0)
  explicit = data.train_loader(train_source, batch_size=100, seed=0, shard_index=0, shard_count=1)
  assert _same(_take(it, 2), _take(explicit, 2))


def test_iterator_position_round_trips_through_an_orbax_checkpoint(train_source, tmp_path):
  grain = pytest.importorskip("grain")
  ocp = pytest.importorskip("orbax.checkpoint")
  kwargs = dict(batch_size=8, seed=5, transforms=AUGMENT, shard_index=0, shard_count=1)
  iterator = data.train_loader(train_source, **kwargs)
  _take(iterator, 3)
  manager = ocp.CheckpointManager(tmp_path / "ckpt", item_names=("data",))
  manager.save(3, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(iterator)))
  manager.wait_until_finished()
  expected = _take(iterator, 2)
  restored = data.train_loader(train_source, **kwargs)
  manager.restore(3, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(restored)))
  assert _same(expected, _take(restored, 2))
