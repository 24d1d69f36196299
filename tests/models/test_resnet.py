"""CIFAR ResNets, WRNs, PreAct ResNets and DiSK's ResNet10 family against their published sizes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from kd_jax.models import get_model, model_names, summary
from kd_jax.models.resnet import cifar_resnet
from kd_jax.models.summary import abstract_variables, count_parameters, dense_macs, forward_cost

CIFAR_IMAGE = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)

# Trainable parameters (name → classes, millions as printed): CIFAR-100 counts from the KD
# literature that uses RepDistiller's models (Tian et al., ICLR 2020, and its followers); the
# CIFAR-10 ResNet-110 count of He et al. (2016, Table 6).
PUBLISHED_PARAMS_M = {
    "resnet20": (100, "0.28"),
    "resnet32": (100, "0.47"),
    "resnet56": (100, "0.86"),
    "resnet110": (10, "1.7"),
    "resnet8x4": (100, "1.23"),
    "resnet32x4": (100, "7.43"),
    "wrn_40_2": (100, "2.26"),
    "wrn_16_2": (100, "0.70"),
    "wrn_40_1": (100, "0.57"),
}

# DiSK (Kag et al., ICLR 2023) CIFAR-100 MACs, millions (PAPERS.md §4).
DISK_MACS_M = {
    "resnet10_l": "64",
    "resnet10_m": "16",
    "resnet10_s": "4",
    "resnet10_xs": "2.86",
    "resnet10_xxs": "2",
    "resnet10_xxxs": "0.8",
    "resnet10": "253",
    "resnet18": "555",
}


def half_unit_of_last_digit(printed: str) -> float:
  decimals = len(printed.split(".")[1]) if "." in printed else 0
  return 0.5 * 10.0**-decimals


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS_M))
def test_parameter_counts_match_published(name):
  classes, printed = PUBLISHED_PARAMS_M[name]
  variables = abstract_variables(get_model(name, num_classes=classes), CIFAR_IMAGE)
  millions = count_parameters(variables["params"]) / 1e6
  assert abs(millions - float(printed)) <= half_unit_of_last_digit(printed) + 1e-9, millions


@pytest.mark.parametrize("name", sorted(DISK_MACS_M))
def test_disk_macs_match_published(name):
  """Paper-convention MACs counted from the jaxpr agree with DiSK to its printed precision."""
  macs = dense_macs(get_model(name, num_classes=100), CIFAR_IMAGE) / 1e6
  printed = DISK_MACS_M[name]
  assert abs(macs - float(printed)) <= half_unit_of_last_digit(printed) + 1e-9, macs


def test_xla_macs_skip_only_padding_taps():
  """XLA's count leaves out taps on the zero padding: equal for 'VALID'-like 1×1 maps, lower
  for 3×3 'SAME' convs by at most the border fraction (1 − (30·3 + 2·2)²/96² ≈ 4% at 32×32)."""
  model = get_model("resnet20", num_classes=100)
  paper = dense_macs(model, CIFAR_IMAGE)
  xla = forward_cost(model, CIFAR_IMAGE, compile=False)["xla_macs"]
  assert 0.85 * paper < xla < paper


class ConvThenDense(nn.Module):

  @nn.compact
  def __call__(self, x, *, train):
    x = nn.Conv(16, (3, 3), strides=2, padding=1, feature_group_count=1)(x)
    x = nn.Conv(16, (3, 3), padding=1, feature_group_count=4)(x)  # grouped
    return {"logits": nn.Dense(10)(x.reshape(x.shape[0], -1))}


def test_dense_macs_by_hand():
  """16·16 outputs × 16 ch × 27 taps, then grouped 16·16 × 16 × 9·(16/4), then 4096 × 10."""
  expected = 16 * 16 * 16 * 27 + 16 * 16 * 16 * 9 * 4 + 16 * 16 * 16 * 10
  assert dense_macs(ConvThenDense(), jnp.zeros((3, 32, 32, 3))) == expected


@pytest.fixture(scope="module")
def resnet8(fashion_images):
  """resnet8 for 10 classes on real 28×28×1 Fashion-MNIST, initialised once (compiling `init`
  costs seconds per network, so the other families are checked through `eval_shape`)."""
  model = get_model("resnet8", num_classes=10)
  init = jax.jit(lambda key, x: model.init(key, x, train=False))
  return model, init(jax.random.PRNGKey(0), fashion_images[:1])


@pytest.mark.parametrize(
    "name,stages,channels",
    [
        ("resnet8", 3, 64),
        ("wrn_16_1", 3, 64),
        ("preact_resnet20", 3, 64),
        ("resnet10_xxs", 4, 16),
        ("preact_resnet56", 3, 256),
    ],
)
def test_output_shapes_on_grayscale_28x28(name, stages, channels):
  """Every family takes 28×28×1 and returns logits, embedding and one map per stage."""
  model = get_model(name, num_classes=10)
  images = jax.ShapeDtypeStruct((8, 28, 28, 1), jnp.float32)
  variables = abstract_variables(model, images)
  out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, images)
  assert out["logits"].shape == (8, 10) and out["logits"].dtype == jnp.float32
  assert out["embedding"].shape == (8, channels)
  # Strides 1, 2, 2(, 2) with 'SAME' padding: 28 → 28, 14, 7(, 4).
  assert [f.shape[1] for f in out["features"]] == [28, 14, 7, 4][:stages]


def test_forward_on_real_images(resnet8, fashion_images):
  model, variables = resnet8
  out = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, fashion_images)
  assert np.isfinite(np.asarray(out["logits"])).all()
  # Post-activation nets: the embedding is the last stage's map, averaged over space.
  np.testing.assert_allclose(out["embedding"], out["features"][-1].mean((1, 2)), rtol=1e-5)
  # Different images give different predictions (the network is not collapsed).
  assert np.ptp(np.asarray(out["logits"]), axis=0).max() > 0


def test_batch_norm_training_uses_batch_statistics(resnet8, fashion_images):
  """In train mode the stem BN normalises with the batch mean and moves the running mean by
  (1 − 0.9)·batch mean from 0 — PyTorch's momentum 0.1 — computed here in NumPy."""
  model, variables = resnet8
  _, updates = model.apply(variables, fashion_images, train=True, mutable=["batch_stats"])
  kernel = np.asarray(variables["params"]["stem_conv"]["kernel"], np.float64)
  padded = np.pad(fashion_images.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
  patches = np.stack([padded[:, i : i + 28, j : j + 28, :] for i in range(3) for j in range(3)], -2)
  stem = np.einsum("bhwkc,kco->bhwo", patches, kernel.reshape(9, 1, -1))
  np.testing.assert_allclose(
      updates["batch_stats"]["stem_bn"]["mean"], 0.1 * stem.mean((0, 1, 2)), rtol=1e-4, atol=1e-6
  )


def test_bfloat16_compute_keeps_float32_params_and_logits(resnet8, fashion_images):
  model32, variables = resnet8
  model16 = model32.clone(dtype=jnp.bfloat16)
  out32 = jax.jit(lambda v, x: model32.apply(v, x, train=False))(variables, fashion_images)
  out16 = jax.jit(lambda v, x: model16.apply(v, x, train=False))(variables, fashion_images)
  assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(variables))
  assert out16["features"][0].dtype == jnp.bfloat16 and out16["logits"].dtype == jnp.float32
  scale = np.abs(np.asarray(out32["logits"])).max()
  np.testing.assert_allclose(out16["logits"], out32["logits"], atol=0.05 * scale)


def test_summary_reports_sizes_and_costs():
  report = summary(get_model("resnet20", num_classes=100), jnp.zeros((2, 32, 32, 3)))
  assert report["params"] == count_parameters(
      abstract_variables(get_model("resnet20"), CIFAR_IMAGE)["params"]
  )
  # BN running mean and variance: two per channel; stem, 3 stages × 3 blocks × 2, 2 shortcuts.
  assert report["state"] == 2 * (16 + 6 * 16 + 6 * 32 + 6 * 64 + 32 + 64)
  assert report["bytes"] == 4 * report["total"]
  assert report["activation_bytes"] > report["largest_activation_bytes"] > 0
  assert 40e6 < report["macs"] < 41e6


def test_bad_inputs_and_names_give_clear_errors():
  with pytest.raises(ValueError, match="batch, height, width, channels"):
    get_model("resnet8").init(jax.random.PRNGKey(0), jnp.zeros((32, 32, 3)), train=False)
  with pytest.raises(ValueError, match="6n \\+ 2"):
    cifar_resnet(9)
  with pytest.raises(ValueError, match="6n \\+ 4"):
    get_model("wrn_15_2")
  with pytest.raises(KeyError, match="unknown model"):
    get_model("resnet9000")
  assert {
      "resnet20",
      "wrn_40_2",
      "resnet10_s",
      "preact_resnet20",
      "vit_tiny",
      "sea_student1",
  } <= set(model_names())


def test_gradients_reach_every_parameter(resnet8, fashion_images):
  """A training step's gradient is finite everywhere and non-zero in every layer."""
  model, variables = resnet8
  labels = jnp.arange(8) % 10

  def loss(params):
    out, _ = model.apply(
        {**variables, "params": params}, fashion_images, train=True, mutable=["batch_stats"]
    )
    log_probs = jax.nn.log_softmax(out["logits"])
    return -jnp.take_along_axis(log_probs, labels[:, None], axis=1).mean()

  grads = jax.jit(jax.grad(loss))(variables["params"])
  for path, g in jax.tree_util.tree_leaves_with_path(grads):
    g = np.asarray(g)
    assert np.isfinite(g).all() and np.abs(g).max() > 0, jax.tree_util.keystr(path)
