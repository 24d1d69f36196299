"""Feature-map losses of the method zoo: NST, VID, OFD, ReviewKD's HCL.

- `nst_mmd`: neuron selectivity transfer (Huang & Wang, 2017), polynomial-kernel MMD between the
  channels' spatial activation patterns.
- `vid_nll`: variational information distillation (Ahn et al., CVPR 2019), the Gaussian negative
  log-likelihood of the teacher's map under the student's prediction, with learned per-channel
  variances.
- `ofd_margin`, `ofd_partial_l2`: OFD (Heo et al., ICCV 2019), the teacher's pre-ReLU map raised
  to a per-channel margin from BatchNorm statistics, and the partial L2 that ignores what the ReLU
  would erase anyway.
- `hcl`: ReviewKD's hierarchical context loss (Chen et al., CVPR 2021), MSE at the map's own size
  and after average pooling to 4×4, 2×2, 1×1.

Maps are [batch, h, w, c]. Per-example outputs [batch], float32 inside. The learned parts
(VID's regressor, OFD's connector, ReviewKD's fusion modules) belong to the methods
(`kd_jax.methods.vid`, `ofd`, `reviewkd`); the losses take their outputs.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from kd_jax.losses import checks
from kd_jax.losses.relational import l2_normalize


def _check_maps(student_features, teacher_features, what: str, same_channels: bool):
  checks.require_rank("student_features", student_features, 4)
  checks.require_rank("teacher_features", teacher_features, 4)
  s, t = jnp.shape(student_features), jnp.shape(teacher_features)
  if (s if same_channels else s[:3]) != (t if same_channels else t[:3]):
    raise ValueError(
        f"student_features has shape {tuple(s)} and teacher_features has shape {tuple(t)}: "
        f"{what}."
    )


def nst_mmd(student_features, teacher_features, *, degree: int = 2, offset: float = 0.0):
  """Neuron selectivity transfer (Huang & Wang, 2017, Eq. 5–6), per example.

  Each channel k of a map is a sample f_k ∈ R^{h·w} (its spatial activation pattern), L2-normalised.
  With the polynomial kernel k(x, y) = (xᵀy + c)^d, the squared MMD between the student's C_s
  channel samples and the teacher's C_t is
    L = (1/C_s²) Σ k(s_i, s_i') + (1/C_t²) Σ k(t_j, t_j') − (2/(C_s C_t)) Σ k(s_i, t_j).
  The paper's (and RepDistiller's) choice is d = 2, c = 0, with weight 50 (the paper's λ/2).
  Channel counts may differ; the spatial sizes must match.

  Args:
    student_features: [batch, h, w, c_s]; teacher_features: [batch, h, w, c_t].
  Returns:
    [batch] float32, ≥ 0.
  """
  _check_maps(
      student_features, teacher_features, "NST needs the same batch and spatial size", False
  )
  if degree < 1:
    raise ValueError(f"degree must be >= 1, got {degree}.")
  student_features, teacher_features = checks.as_float32(student_features, teacher_features)

  def channel_samples(maps):  # [b, c, h·w], each row a unit vector
    return l2_normalize(jnp.swapaxes(jnp.reshape(maps, (maps.shape[0], -1, maps.shape[-1])), 1, 2))

  s, t = channel_samples(student_features), channel_samples(teacher_features)
  kernel_mean = lambda a, b: jnp.mean((jnp.einsum("bip,bjp->bij", a, b) + offset) ** degree, (1, 2))
  return kernel_mean(s, s) + kernel_mean(t, t) - 2.0 * kernel_mean(s, t)


def vid_variance(raw_variance, eps: float = 1e-5):
  """σ²_c = softplus(α_c) + ε: positive per-channel variances from unconstrained params α."""
  return jax.nn.softplus(checks.as_float32(raw_variance)) + eps


def vid_raw_variance(initial_variance: float, eps: float = 1e-5) -> float:
  """α with softplus(α) + ε = `initial_variance` (the paper's code starts every σ² at 5)."""
  if initial_variance <= eps:
    raise ValueError(f"initial_variance must exceed eps={eps}, got {initial_variance}.")
  return math.log(math.expm1(initial_variance - eps))


def vid_nll(predicted_mean, teacher_features, raw_variance, *, eps: float = 1e-5):
  """Variational information distillation (Ahn et al., CVPR 2019, Eq. 2–5), per example.

  The teacher's map t is modelled as Gaussian around the student's prediction μ(s) (a regressor on
  the student's map, owned by the method) with a learned variance per channel,
  σ²_c = softplus(α_c) + ε; the loss is the negative log-likelihood without its constant,
    L = mean_{h,w,c} ½ (log σ²_c + (t_hwc − μ_hwc)² / σ²_c),
  averaged over positions and channels as in the paper's CIFAR code (weight 1 there).

  Args:
    predicted_mean: μ [batch, h, w, c_t]; teacher_features: t [batch, h, w, c_t];
    raw_variance: α [c_t].
  Returns:
    [batch] float32 (may be negative: a log-density).
  """
  _check_maps(
      predicted_mean, teacher_features, "VID's prediction must have the teacher's shape", True
  )
  checks.require_rank("raw_variance", raw_variance, 1)
  checks.require_dim(
      "raw_variance", raw_variance, 0, "teacher_features", teacher_features, -1, "Channels"
  )
  predicted_mean, teacher_features = checks.as_float32(predicted_mean, teacher_features)
  variance = vid_variance(raw_variance, eps)
  nll = 0.5 * (jnp.log(variance) + jnp.square(teacher_features - predicted_mean) / variance)
  return jnp.mean(nll, axis=(1, 2, 3))


def ofd_margin(bn_scale, bn_bias):
  """OFD's margin per channel (Heo et al., ICCV 2019, Eq. 3): m = E[x | x < 0] for the pre-ReLU
  response x ~ N(β, γ²) that a BatchNorm with scale γ and shift β produces:
    m = β − |γ|·φ(β/|γ|) / Φ(−β/|γ|),
  and −3|γ| where Φ(−β/|γ|) ≤ 0.001 (almost no negative responses: the paper's code's fallback).

  Args:
    bn_scale: γ [c]; bn_bias: β [c].
  Returns:
    [c] float32, < 0.
  """
  checks.require_rank("bn_scale", bn_scale, 1)
  checks.require_same_shape("bn_scale", bn_scale, "bn_bias", bn_bias)
  scale, bias = checks.as_float32(bn_scale, bn_bias)
  std = jnp.maximum(jnp.abs(scale), 1e-12)
  z = bias / std
  negative_mass = jax.scipy.stats.norm.cdf(-z)
  safe_mass = jnp.maximum(negative_mass, 1e-3)
  truncated_mean = bias - std * jax.scipy.stats.norm.pdf(z) / safe_mass
  return jnp.where(negative_mass > 1e-3, truncated_mean, -3.0 * std)


def ofd_partial_l2(student_features, teacher_features, margin):
  """OFD's partial L2 distance (Heo et al., ICCV 2019, Eq. 4), per example.

  The target is the teacher's pre-ReLU map raised to the margin, T = max(t, m) (channel-wise m
  from `ofd_margin`), and with S the student's map through its connector,
    d_p(T, S) = Σ_i 0 if S_i ≤ T_i ≤ 0, else (T_i − S_i)²:
  where the teacher's response is negative, the ReLU erases it, so the student need only stay below
  it. Summed over positions and channels (the paper's code divides the batch's sum by the batch
  size, i.e. the mean of this, and weights it 1e-3).

  Args:
    student_features: S [batch, h, w, c_t]; teacher_features: t [batch, h, w, c_t] (pre-ReLU);
    margin: m [c_t].
  Returns:
    [batch] float32, ≥ 0.
  """
  _check_maps(
      student_features,
      teacher_features,
      "OFD needs the connector to give the teacher's shape",
      True,
  )
  checks.require_rank("margin", margin, 1)
  checks.require_dim("margin", margin, 0, "teacher_features", teacher_features, -1, "Channels")
  student, teacher, margin = checks.as_float32(student_features, teacher_features, margin)
  target = jnp.maximum(teacher, margin)
  counts = (student > target) | (target > 0)
  return jnp.sum(jnp.where(counts, jnp.square(student - target), 0.0), axis=(1, 2, 3))


def adaptive_pool_matrix(size: int, out_size: int) -> np.ndarray:
  """[out_size, size] averaging weights of adaptive average pooling along one axis: output cell i
  averages inputs floor(i·size/out) … ceil((i+1)·size/out) − 1 (windows overlap when out does not
  divide size)."""
  weights = np.zeros((out_size, size), np.float32)
  for i in range(out_size):
    start, end = (i * size) // out_size, -((-(i + 1) * size) // out_size)
    weights[i, start:end] = 1.0 / (end - start)
  return weights


def adaptive_avg_pool(maps, out_size: int):
  """[batch, h, w, c] → [batch, out_size, out_size, c] by adaptive average pooling."""
  rows = adaptive_pool_matrix(maps.shape[1], out_size)
  cols = adaptive_pool_matrix(maps.shape[2], out_size)
  return jnp.einsum("ih,bhwc,jw->bijc", rows, maps, cols)


def hcl(student_features, teacher_features, *, levels=(4, 2, 1)):
  """ReviewKD's hierarchical context loss for one map pair (Chen et al., CVPR 2021, §3.3).

  L = (MSE(s, t) + Σ_k 2^−k MSE(P_lk(s), P_lk(t))) / (1 + Σ_k 2^−k), P_l adaptive average pooling
  to l×l, over the levels l in `levels` (4, 2, 1 in the paper's code) smaller than the map's height,
  k = 1, 2, … in that order; MSE is the mean over positions and channels. The method sums L over
  stages; its fused student maps (ABF) already have the teacher's shape.

  Args:
    student_features, teacher_features: [batch, h, w, c], equal shapes.
  Returns:
    [batch] float32, ≥ 0.
  """
  _check_maps(student_features, teacher_features, "HCL compares maps of equal shape", True)
  student, teacher = checks.as_float32(student_features, teacher_features)
  mse = lambda a, b: jnp.mean(jnp.square(a - b), axis=(1, 2, 3))
  total, weight, weights = mse(student, teacher), 1.0, 1.0
  for level in levels:
    if level >= student.shape[1]:
      continue
    weight /= 2.0
    total += weight * mse(adaptive_avg_pool(student, level), adaptive_avg_pool(teacher, level))
    weights += weight
  return total / weights
