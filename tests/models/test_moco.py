"""The MoCo-v2 checkpoint loader, on a tiny file written in the official format: a `torch.save`d
{"state_dict": {"module.encoder_q.<torchvision ResNet-50 key>": tensor, ...}} with the key
encoder and MoCo-v2's MLP head beside it. The tensors are random, not MoCo's weights: the test is
of the mapping (every key, layout, statistics), checked against torchvision-style PyTorch math."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kd_jax.models import moco

torch = pytest.importorskip("torch")


def _torch_state_dict(rng):
  """A torchvision ResNet-50 state dict with random values, built from the layout alone."""
  sd = {}

  def conv(name, out, inp, k):
    weight = rng.normal(size=(out, inp, k, k)) / np.sqrt(inp * k * k)
    sd[f"{name}.weight"] = weight.astype(np.float32)

  def bn(name, c):
    sd[f"{name}.weight"] = rng.uniform(0.5, 1.5, c).astype(np.float32)
    sd[f"{name}.bias"] = rng.normal(size=c).astype(np.float32) * 0.1
    sd[f"{name}.running_mean"] = rng.normal(size=c).astype(np.float32) * 0.1
    sd[f"{name}.running_var"] = rng.uniform(0.5, 1.5, c).astype(np.float32)
    sd[f"{name}.num_batches_tracked"] = np.array(7)

  conv("conv1", 64, 3, 7)
  bn("bn1", 64)
  inp = 64
  for s, (width, blocks) in enumerate(zip(moco.WIDTHS, moco.BLOCKS), 1):
    for b in range(blocks):
      p = f"layer{s}.{b}"
      conv(f"{p}.conv1", width, inp, 1)
      bn(f"{p}.bn1", width)
      conv(f"{p}.conv2", width, width, 3)
      bn(f"{p}.bn2", width)
      conv(f"{p}.conv3", 4 * width, width, 1)
      bn(f"{p}.bn3", 4 * width)
      if b == 0:
        conv(f"{p}.downsample.0", 4 * width, inp, 1)
        bn(f"{p}.downsample.1", 4 * width)
      inp = 4 * width
  sd["fc.0.weight"] = np.zeros((2048, 2048), np.float32)  # MoCo-v2's MLP head: dropped
  sd["fc.2.weight"] = np.zeros((128, 2048), np.float32)
  return sd


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
  sd = _torch_state_dict(np.random.default_rng(0))
  state = {f"module.encoder_q.{k}": torch.from_numpy(np.asarray(v)) for k, v in sd.items()}
  state["module.encoder_k.conv1.weight"] = torch.zeros(64, 3, 7, 7)  # ignored
  state["module.queue"] = torch.zeros(128, 16)
  path = tmp_path_factory.mktemp("moco") / "moco_v2_tiny.pth.tar"
  torch.save({"epoch": 1, "arch": "resnet50", "state_dict": state}, path)
  return str(path), sd


def _torch_embedding(sd, x):
  """torchvision's ResNet-50 forward (eval mode) written with torch.nn.functional: [b, 2048]."""
  f = torch.nn.functional
  t = lambda k: torch.from_numpy(np.asarray(sd[k]))
  bn = lambda y, n: f.batch_norm(
      y, t(f"{n}.running_mean"), t(f"{n}.running_var"), t(f"{n}.weight"), t(f"{n}.bias"), eps=1e-5
  )
  y = f.relu(bn(f.conv2d(x, t("conv1.weight"), stride=2, padding=3), "bn1"))
  y = f.max_pool2d(y, 3, 2, 1)
  for s, blocks in enumerate(moco.BLOCKS, 1):
    for b in range(blocks):
      p, stride = f"layer{s}.{b}", (2 if b == 0 and s > 1 else 1)
      out = f.relu(bn(f.conv2d(y, t(f"{p}.conv1.weight")), f"{p}.bn1"))
      out = f.relu(bn(f.conv2d(out, t(f"{p}.conv2.weight"), stride=stride, padding=1), f"{p}.bn2"))
      out = bn(f.conv2d(out, t(f"{p}.conv3.weight")), f"{p}.bn3")
      if b == 0:
        y = bn(f.conv2d(y, t(f"{p}.downsample.0.weight"), stride=stride), f"{p}.downsample.1")
      y = f.relu(out + y)
  return y.mean(dim=(2, 3))


def test_every_query_encoder_tensor_lands_in_the_model(checkpoint):
  path, sd = checkpoint
  model = moco.moco_v2_resnet50(checkpoint=path)
  x = jnp.zeros((1, 64, 64, 3))
  init = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  loaded = model.load_pretrained(jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), init))
  count = sum(a.size for a in jax.tree.leaves(loaded))
  expected = sum(
      np.asarray(v).size
      for k, v in sd.items()
      if not k.startswith("fc.") and "num_batches" not in k
  )
  assert count == expected
  stage = loaded["params"]["stage2_block1"]
  np.testing.assert_array_equal(
      stage["conv2"]["kernel"], np.transpose(sd["layer2.0.conv2.weight"], (2, 3, 1, 0))
  )
  np.testing.assert_array_equal(
      loaded["batch_stats"]["stage4_block1"]["shortcut_bn"]["var"],
      sd["layer4.0.downsample.1.running_var"],
  )


def test_embedding_matches_pytorch_and_frozen_batch_norm_keeps_statistics(checkpoint):
  path, sd = checkpoint
  model = moco.moco_v2_resnet50(checkpoint=path)
  x = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype(np.float32)
  variables = model.load_pretrained(model.init(jax.random.key(0), x, train=False))
  expected = _torch_embedding(sd, torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
  got = model.apply(variables, x, train=False, outputs=("embedding",))["embedding"]
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
  # Train mode with frozen BatchNorm: the same output, and no statistic moves.
  out, updates = model.apply(
      variables, x, train=True, outputs=("embedding",), mutable=["batch_stats"]
  )
  np.testing.assert_allclose(out["embedding"], got, rtol=1e-6, atol=1e-6)
  for a, b in zip(
      jax.tree.leaves(updates["batch_stats"]), jax.tree.leaves(variables["batch_stats"])
  ):
    np.testing.assert_array_equal(a, b)


def test_a_file_without_moco_keys_is_refused(tmp_path):
  path = tmp_path / "other.pth"
  torch.save({"state_dict": {"conv1.weight": torch.zeros(64, 3, 7, 7)}}, path)
  with pytest.raises(ValueError, match="no key starts with"):
    moco.convert_moco_state_dict(moco.load_moco_state_dict(str(path)))
