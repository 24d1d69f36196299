"""Independent NumPy implementations written from the equations in PAPERS.md.

Deliberately loop-based and float64: they share no code with kd_jax and are slow but obvious.
"""

import math

import numpy as np


def softmax(z):
  z = np.asarray(z, np.float64)
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def kl(p, q):
  p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
  return float(sum(pi * math.log(pi / qi) for pi, qi in zip(p, q) if pi > 0))


def normalize(v):
  v = np.asarray(v, np.float64)
  return v / np.linalg.norm(v)


def smooth_l1(a, b):
  d = abs(a - b)
  return 0.5 * d * d if d < 1 else d - 0.5


# ------------------------------------------------------------------ logits
def cross_entropy(logits, labels, eps=0.0):
  out = []
  for z, y in zip(logits, labels):
    p = softmax(z)
    c = len(z)
    target = np.full(c, eps / c)
    target[y] += 1 - eps
    out.append(-float(np.sum(target * np.log(p))))
  return np.array(out)


def hinton_kd(student, teacher, tau):
  return np.array(
      [tau * tau * kl(softmax(t / tau), softmax(s / tau)) for s, t in zip(student, teacher)]
  )


def ensemble_logits(members):
  members = np.asarray(members, np.float64)
  return np.log(np.mean([softmax(m) for m in members], axis=0))


# ------------------------------------------------------------------ relational
def similarity_kl(s_emb, s_anchors, t_emb, t_anchors, tau, tau_s):
  out = []
  for i in range(len(s_emb)):
    sa = s_anchors if np.ndim(s_anchors) == 2 else s_anchors[i]
    ta = t_anchors if np.ndim(t_anchors) == 2 else t_anchors[i]
    p_t = softmax(np.array([normalize(t_emb[i]) @ normalize(a) for a in ta]) / tau)
    p_s = softmax(np.array([normalize(s_emb[i]) @ normalize(a) for a in sa]) / tau_s)
    out.append(kl(p_t, p_s))
  return np.array(out)


def _distances(x):
  n = len(x)
  d = np.zeros((n, n))
  for i in range(n):
    for j in range(n):
      if i != j:
        d[i, j] = np.linalg.norm(np.asarray(x[i], np.float64) - x[j])
  mean = d.sum() / (n * (n - 1))
  return d / mean


def rkd_distance(s, t):
  ds, dt = _distances(s), _distances(t)
  n = len(s)
  return np.array([np.mean([smooth_l1(ds[i, j], dt[i, j]) for j in range(n)]) for i in range(n)])


def _angle(x, i, j, k):
  x = np.asarray(x, np.float64)
  u, v = x[j] - x[i], x[k] - x[i]
  nu, nv = np.linalg.norm(u), np.linalg.norm(v)
  if nu == 0 or nv == 0:
    return 0.0
  return float(u @ v / (nu * nv))


def rkd_angle(s, t):
  n = len(s)
  return np.array(
      [
          np.mean(
              [
                  smooth_l1(_angle(s, i, j, k), _angle(t, i, j, k))
                  for j in range(n)
                  for k in range(n)
              ]
          )
          for i in range(n)
      ]
  )


def correlation_congruence(s, t, kernel, gamma, order):
  def corr(x):
    x = [normalize(v) for v in x]
    n = len(x)
    c = np.zeros((n, n))
    for i in range(n):
      for j in range(n):
        if kernel == "bilinear":
          c[i, j] = x[i] @ x[j]
        elif kernel == "gaussian":
          c[i, j] = math.exp(-gamma * np.sum((x[i] - x[j]) ** 2))
        else:
          c[i, j] = sum(
              math.exp(-2 * gamma) * (2 * gamma) ** p / math.factorial(p) * (x[i] @ x[j]) ** p
              for p in range(order + 1)
          )
    return c

  cs, ct = corr(s), corr(t)
  return np.mean((ct - cs) ** 2, axis=1)


# ------------------------------------------------------------------ attention
def _soft_alignment(t_rows, s_rows):
  a = np.zeros((len(t_rows), len(s_rows)))
  for i, ti in enumerate(t_rows):
    w = np.array([normalize(ti) @ normalize(sj) for sj in s_rows])
    a[i] = np.exp(w) / np.exp(w).sum()
  return a


def amad_mse(t_attn, s_attn):
  out = []
  for t, s in zip(t_attn, s_attn):
    t_rows = [normalize(h.ravel()) for h in t]
    s_rows = [normalize(h.ravel()) for h in s]
    a = _soft_alignment(t_rows, s_rows)
    out.append(
        sum(
            np.sum((t_rows[i] - sum(a[i, j] * s_rows[j] for j in range(len(s_rows)))) ** 2)
            for i in range(len(t_rows))
        )
    )
  return np.array(out)


def amad_kl(t_attn, s_attn, query_mask=None):
  out = []
  for b, (t, s) in enumerate(zip(t_attn, s_attn)):
    a = _soft_alignment([h.ravel() for h in t], [h.ravel() for h in s])
    total = 0.0
    for i in range(len(t)):
      mix = sum(a[i, j] * np.asarray(s[j], np.float64) for j in range(len(s)))
      for q in range(t.shape[1]):
        if query_mask is None or query_mask[b][q]:
          total += kl(t[i, q], mix[q])
    out.append(total)
  return np.array(out)


def amad_token_kl(t_attn, s_attn):
  out = []
  for t, s in zip(t_attn, s_attn):
    total = 0.0
    for l in range(t.shape[1]):
      t_l, s_l = t[:, l, :], s[:, l, :]
      a = _soft_alignment(t_l, s_l)
      for i in range(len(t_l)):
        mix = sum(a[i, j] * np.asarray(s_l[j], np.float64) for j in range(len(s_l)))
        total += kl(t_l[i], mix)
    out.append(total)
  return np.array(out)


def project(s_attn, kernel, bias):
  out = np.maximum(np.einsum("...k,tk->...t", np.asarray(s_attn, np.float64), kernel) + bias, 0)
  return out / out.sum(-1, keepdims=True)


def one_to_one(t_attn, s_attn, kind):
  out = []
  for t, s in zip(t_attn, s_attn):
    if kind == "mse":
      out.append(np.mean((np.asarray(t, np.float64) - s) ** 2))
    else:
      out.append(
          np.mean([[kl(t[h, q], s[h, q]) for q in range(t.shape[1])] for h in range(t.shape[0])])
      )
  return np.array(out)


# ------------------------------------------------------------------ embedding
def embedding_mse(s, t):
  return np.array([np.mean((np.asarray(a, np.float64) - b) ** 2) for a, b in zip(s, t)])


def fitnets(s_feat, t_feat, kernel, bias):
  out = []
  for s, t in zip(s_feat, t_feat):
    s = np.asarray(s, np.float64).reshape(-1, s.shape[-1])
    t = np.asarray(t, np.float64).reshape(-1, t.shape[-1])
    out.append(np.mean((s @ kernel + bias - t) ** 2))
  return np.array(out)


def attention_transfer(s_feat, t_feat, p=2.0):
  """Zagoruyko & Komodakis: q = vec(Σ_c |A_c|^p)/‖·‖₂ per example, loss = mean_j (q_s − q_t)²."""
  out = []
  for s, t in zip(s_feat, t_feat):
    qs = (np.abs(np.asarray(s, np.float64)) ** p).sum(-1).ravel()
    qt = (np.abs(np.asarray(t, np.float64)) ** p).sum(-1).ravel()
    out.append(np.mean((qs / np.linalg.norm(qs) - qt / np.linalg.norm(qt)) ** 2))
  return np.array(out)


def cosine_distance(s, t):
  return np.array([1 - normalize(a) @ normalize(b) for a, b in zip(s, t)])


# ------------------------------------------------------------------ DiSK
def disk_loss(s_logits, t_logits, gate, labels, tau_s, tau_t, k):
  out = []
  for s, t, g, y in zip(s_logits, t_logits, gate, labels):
    c = len(t)
    mask = np.zeros(c)
    mask[np.argsort(-t, kind="stable")[:k]] = 1
    mask[y] = 1
    teacher = softmax(t / tau_t * mask + t.min() * (1 - mask)) * mask
    z = softmax(s / tau_s) + g * mask
    out.append(tau_s * tau_t * -np.sum(teacher * np.log(z)))
  return np.array(out)


def disk_budget(s_logits, t_logits, gate, labels, delta, max_ce):
  total, errors = 0.0, 0
  for s, t, g, y in zip(s_logits, t_logits, gate, labels):
    ce = -math.log(softmax(s)[int(np.argmax(t))])
    total += g * min(ce, max_ce)
    errors += int(np.argmax(s) != y)
  return max(total / max(errors, 1) - delta, 0.0)


def disk_poster_loss(s_logits, t_logits, gate):
  return np.array(
      [
          -np.sum(softmax(t) * np.log((softmax(s) + g) / softmax(t)))
          for s, t, g in zip(s_logits, t_logits, gate)
      ]
  )


def disk_poster_budget(s_logits, gate, labels, delta):
  return max(
      -np.mean([g * math.log(softmax(s)[y]) for s, g, y in zip(s_logits, gate, labels)]) - delta,
      0.0,
  )
