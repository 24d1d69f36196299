"""The MoCo-v2 checkpoint loader, on tiny files in the official format (both torch.save formats):
{"epoch", "arch", "state_dict": {"module.encoder_q.<torchvision ResNet-50 key>": tensor, ...,
key encoder, queue}, "optimizer"} around a ResNet-50 of width 1 (tests/models/torch_fixtures.py).
The values are a deterministic pattern, not MoCo's weights: the test is of the mapping (every key,
layout, statistics) and of the forward pass against torchvision-style PyTorch math, whose output
scripts/make_torch_fixtures.py stored. No torch is needed here."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kd_jax.models import moco
from tests.models import torch_fixtures as recipe


def _model(fmt: str) -> moco.MocoResNet50:
  # As moco_v2_resnet50 builds it (BatchNorm frozen), at the fixture's width.
  return moco.MocoResNet50(
      checkpoint=str(recipe.moco_file(fmt)), width=recipe.MOCO_WIDTH, frozen_batch_norm=True
  )


def _loaded(model, x):
  init = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  return model.load_pretrained(jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), init))


@pytest.mark.parametrize("fmt", recipe.FORMATS)
def test_every_query_encoder_tensor_lands_in_the_model(fmt):
  sd = recipe.moco_query_encoder()
  loaded = _loaded(_model(fmt), jnp.zeros((1, 32, 32, 3)))
  count = sum(a.size for a in jax.tree.leaves(loaded))
  expected = sum(
      v.size for k, v in sd.items() if not k.startswith("fc.") and "num_batches" not in k
  )
  assert count == expected
  params, stats = loaded["params"], loaded["batch_stats"]
  np.testing.assert_array_equal(
      params["stem_conv"]["kernel"], sd["conv1.weight"].transpose(2, 3, 1, 0)  # OIHW -> HWIO
  )
  np.testing.assert_array_equal(
      params["stage2_block1"]["conv2"]["kernel"], sd["layer2.0.conv2.weight"].transpose(2, 3, 1, 0)
  )
  np.testing.assert_array_equal(
      params["stage3_block6"]["conv3"]["kernel"], sd["layer3.5.conv3.weight"].transpose(2, 3, 1, 0)
  )
  np.testing.assert_array_equal(
      params["stage4_block1"]["shortcut_conv"]["kernel"],
      sd["layer4.0.downsample.0.weight"].transpose(2, 3, 1, 0),
  )
  np.testing.assert_array_equal(params["stem_bn"]["scale"], sd["bn1.weight"])
  np.testing.assert_array_equal(params["stage1_block3"]["bn2"]["bias"], sd["layer1.2.bn2.bias"])
  np.testing.assert_array_equal(
      stats["stage3_block2"]["bn1"]["mean"], sd["layer3.1.bn1.running_mean"]
  )
  np.testing.assert_array_equal(
      stats["stage4_block1"]["shortcut_bn"]["var"], sd["layer4.0.downsample.1.running_var"]
  )


@pytest.mark.parametrize("fmt", recipe.FORMATS)
def test_embedding_matches_pytorch_and_frozen_batch_norm_keeps_statistics(fmt):
  model = _model(fmt)
  x = recipe.moco_input()
  variables = model.load_pretrained(model.init(jax.random.key(0), x, train=False))
  got = model.apply(variables, x, train=False, outputs=("embedding",))["embedding"]
  np.testing.assert_allclose(got, np.load(recipe.MOCO_EMBEDDING), rtol=1e-4, atol=1e-4)
  # Train mode with frozen BatchNorm: the same output, and no statistic moves.
  out, updates = model.apply(
      variables, x, train=True, outputs=("embedding",), mutable=["batch_stats"]
  )
  np.testing.assert_allclose(out["embedding"], got, rtol=1e-6, atol=1e-6)
  for a, b in zip(
      jax.tree.leaves(updates["batch_stats"]), jax.tree.leaves(variables["batch_stats"])
  ):
    np.testing.assert_array_equal(a, b)


def test_a_checkpoint_of_another_width_does_not_match_the_resnet50():
  model = moco.moco_v2_resnet50(checkpoint=str(recipe.moco_file("zip")))  # width 64
  init = jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
  )
  with pytest.raises(ValueError, match="params do not match a ResNet-50"):
    model.load_pretrained(init)


def test_a_file_without_moco_keys_is_refused():
  with pytest.raises(ValueError, match="no key starts with"):
    moco.convert_moco_state_dict(moco.load_moco_state_dict(str(recipe.tensors_file("zip"))))


def test_a_file_that_is_not_a_checkpoint_names_itself(tmp_path):
  path = tmp_path / "moco_v2_800ep_pretrain.pth.tar"
  path.write_text("<html>404 Not Found</html>")  # a failed download
  with pytest.raises(ValueError, match="moco_v2_800ep_pretrain.pth.tar: not a torch.save file"):
    moco.load_moco_state_dict(str(path))
