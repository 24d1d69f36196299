"""Independent NumPy implementations of the method zoo's losses, written from each paper's equation.

The same rules as `numpy_reference.py`: loop-based, float64, no code shared with kd_jax; maps are
[batch, h, w, c] as in kd_jax.
"""

import math

import numpy as np

from tests.losses.numpy_reference import kl, normalize, softmax


# ------------------------------------------------------------------ DKD (Zhao et al., 2022)
def tckd(student, teacher, labels, tau):
  """τ²·KL(b^T ‖ b^S), b = [p_y, Σ_{c≠y} p_c] of σ(z/τ)."""
  out = []
  for s, t, y in zip(student, teacher, labels):
    ps, pt = softmax(s / tau), softmax(t / tau)
    out.append(tau * tau * kl([pt[y], 1 - pt[y]], [ps[y], 1 - ps[y]]))
  return np.array(out)


def nckd(student, teacher, labels, tau):
  """τ²·KL(p̂^T ‖ p̂^S), p̂ the softmax of z/τ over the classes other than y."""
  out = []
  for s, t, y in zip(student, teacher, labels):
    others = [c for c in range(len(s)) if c != y]
    out.append(tau * tau * kl(softmax(t[others] / tau), softmax(s[others] / tau)))
  return np.array(out)


# ------------------------------------------------------------------ DIST (Huang et al., 2022)
def pearson(u, v):
  """Cov(u, v) / (Std(u) Std(v)), the paper's ρ_p."""
  u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
  du, dv = u - u.mean(), v - v.mean()
  return float(np.sum(du * dv) / math.sqrt(np.sum(du * du) * np.sum(dv * dv)))


def dist_inter(student, teacher, tau):
  ys = [softmax(s / tau) for s in student]
  yt = [softmax(t / tau) for t in teacher]
  return np.array([tau * tau * (1 - pearson(a, b)) for a, b in zip(ys, yt)])


def dist_intra(student, teacher, tau):
  ys = np.array([softmax(s / tau) for s in student])
  yt = np.array([softmax(t / tau) for t in teacher])
  return np.array([tau * tau * (1 - pearson(ys[:, c], yt[:, c])) for c in range(ys.shape[1])])


# ------------------------------------------------------------------ PKT, SP
def pkt(student, teacher, eps=1e-7):
  """p_ij = K(x_i, x_j)/Σ_k K(x_i, x_k), K = (cos + 1)/2; loss_i = (1/n) Σ_j p^T log(...)."""

  def probabilities(x):
    n = len(x)
    k = np.array(
        [[(normalize(x[i]) @ normalize(x[j]) + 1) / 2 for j in range(n)] for i in range(n)]
    )
    return k / k.sum(1, keepdims=True)

  ps, pt = probabilities(student), probabilities(teacher)
  n = len(student)
  return np.array(
      [
          sum(pt[i, j] * math.log((pt[i, j] + eps) / (ps[i, j] + eps)) for j in range(n)) / n
          for i in range(n)
      ]
  )


def similarity_preserving(student, teacher):
  """G = Q Qᵀ, rows L2-normalised; loss_i = (1/n) Σ_j (G^T_ij − G^S_ij)²."""

  def gram(x):
    q = np.asarray(x, np.float64).reshape(len(x), -1)
    n = len(q)
    g = np.array([[q[i] @ q[j] for j in range(n)] for i in range(n)])
    return np.array([normalize(row) for row in g])

  diff = gram(teacher) - gram(student)
  return np.array([np.sum(diff[i] ** 2) / len(diff) for i in range(len(diff))])


# ------------------------------------------------------------------ NST
def nst(student, teacher, degree=2, offset=0.0):
  """Squared MMD of the channels' unit spatial patterns under k(x, y) = (xᵀy + c)^d."""

  def unit(v):  # a dead channel (all zeros after a ReLU) stays the zero vector
    v = np.asarray(v, np.float64)
    norm = np.linalg.norm(v)
    return v / norm if norm > 0 else v

  out = []
  for s, t in zip(student, teacher):
    fs = [unit(s[..., k].ravel()) for k in range(s.shape[-1])]
    ft = [unit(t[..., k].ravel()) for k in range(t.shape[-1])]
    kernel = lambda a, b: (a @ b + offset) ** degree
    mean = lambda xs, ys: np.mean([kernel(x, y) for x in xs for y in ys])
    out.append(mean(fs, fs) + mean(ft, ft) - 2 * mean(fs, ft))
  return np.array(out)


# ------------------------------------------------------------------ VID
def vid(mean, teacher, raw_variance, eps=1e-5):
  """mean over positions and channels of ½(log σ²_c + (t − μ)²/σ²_c), σ²_c = log(1 + e^α_c) + ε."""
  variance = [math.log1p(math.exp(a)) + eps for a in raw_variance]
  out = []
  for m, t in zip(mean, teacher):
    h, w, c = t.shape
    total = 0.0
    for i in range(h):
      for j in range(w):
        for k in range(c):
          total += 0.5 * (math.log(variance[k]) + (t[i, j, k] - m[i, j, k]) ** 2 / variance[k])
    out.append(total / (h * w * c))
  return np.array(out)


# ------------------------------------------------------------------ OFD
def _normal_pdf(x):
  return math.exp(-x * x / 2) / math.sqrt(2 * math.pi)


def _normal_cdf(x):
  return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def ofd_margin(scale, bias):
  """E[x | x < 0] for x ~ N(β, γ²), or −3|γ| when P(x < 0) ≤ 0.001."""
  out = []
  for g, b in zip(scale, bias):
    s = abs(g)
    mass = _normal_cdf(-b / s)
    out.append(b - s * _normal_pdf(b / s) / mass if mass > 1e-3 else -3 * s)
  return np.array(out)


def ofd_partial_l2(student, teacher, margin):
  """Σ over elements: 0 where S ≤ T ≤ 0, else (T − S)², with T = max(t, m_c)."""
  out = []
  for s, t in zip(student, teacher):
    total = 0.0
    for index in np.ndindex(*s.shape):
      target = max(t[index], margin[index[-1]])
      if not (s[index] <= target <= 0):
        total += (target - s[index]) ** 2
    out.append(total)
  return np.array(out)


# ------------------------------------------------------------------ ReviewKD's HCL
def adaptive_avg_pool(x, out):
  """[h, w, c] → [out, out, c]; cell i averages rows floor(i·h/out) … ceil((i+1)·h/out) − 1."""
  h, w, _ = x.shape
  result = np.zeros((out, out, x.shape[-1]))
  for i in range(out):
    for j in range(out):
      r0, r1 = (i * h) // out, math.ceil((i + 1) * h / out)
      c0, c1 = (j * w) // out, math.ceil((j + 1) * w / out)
      result[i, j] = np.asarray(x[r0:r1, c0:c1], np.float64).mean(axis=(0, 1))
  return result


def hcl(student, teacher, levels=(4, 2, 1)):
  out = []
  for s, t in zip(student, teacher):
    s, t = np.asarray(s, np.float64), np.asarray(t, np.float64)
    total, weight, weights = np.mean((s - t) ** 2), 1.0, 1.0
    for level in levels:
      if level >= s.shape[0]:
        continue
      weight /= 2
      total += weight * np.mean((adaptive_avg_pool(s, level) - adaptive_avg_pool(t, level)) ** 2)
      weights += weight
    out.append(total / weights)
  return np.array(out)
