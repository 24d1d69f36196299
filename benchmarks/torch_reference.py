"""Plain PyTorch peers of the benchmarked kd_jax models and KD step (benchmark-only, no torchvision).

The nets mirror kd_jax's exactly in shape and parameter count so the two frameworks do the same
arithmetic: RepDistiller's CIFAR ResNets (post-activation basic blocks, option-B 1×1 shortcuts,
bias-free convolutions, global mean pool) and Hugging Face's post-LayerNorm BERT encoder with
mean pooling and a linear head. Attention uses `F.scaled_dot_product_attention` (flash /
memory-efficient kernels where available, with BERT's attention dropout), which is what a PyTorch
user would write today.

The KD step is the one `kd_jax.methods.vanilla_kd` computes: the frozen teacher in eval mode
under `no_grad`, the student in train mode, L = α·CE + (1 − α)·τ²·KL(σ(z_t/τ) ‖ σ(z_s/τ)), then
the optimiser update; bf16 runs under `torch.autocast` (float32 master weights, as in kd_jax).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):

  def __init__(self, cin: int, cout: int, stride: int):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(cout)
    self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(cout)
    self.shortcut = nn.Identity()
    if stride != 1 or cin != cout:
      self.shortcut = nn.Sequential(
          nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
      )

  def forward(self, x):
    y = F.relu(self.bn1(self.conv1(x)))
    return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class CifarResNet(nn.Module):
  """RepDistiller's resnet{depth}: widths (16, 16, 32, 64), (depth − 2)/6 blocks per stage."""

  def __init__(self, depth: int, num_classes: int = 100, widths=(16, 16, 32, 64)):
    super().__init__()
    n = (depth - 2) // 6
    self.stem = nn.Sequential(
        nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()
    )
    blocks, cin = [], widths[0]
    for width, stride in zip(widths[1:], (1, 2, 2)):
      for index in range(n):
        blocks.append(BasicBlock(cin, width, stride if index == 0 else 1))
        cin = width
    self.blocks = nn.Sequential(*blocks)
    self.classifier = nn.Linear(cin, num_classes)

  def forward(self, x):
    return self.classifier(self.blocks(self.stem(x)).mean(dim=(2, 3)))


class BertLayer(nn.Module):

  def __init__(self, hidden: int, heads: int, intermediate: int, dropout: float):
    super().__init__()
    self.heads, self.dropout = heads, dropout
    self.qkv = nn.Linear(hidden, 3 * hidden)
    self.out = nn.Linear(hidden, hidden)
    self.norm1 = nn.LayerNorm(hidden, eps=1e-12)
    self.inner = nn.Linear(hidden, intermediate)
    self.outer = nn.Linear(intermediate, hidden)
    self.norm2 = nn.LayerNorm(hidden, eps=1e-12)

  def forward(self, h, mask):
    b, length, hidden = h.shape
    q, k, v = (
        self.qkv(h).view(b, length, 3, self.heads, hidden // self.heads).permute(2, 0, 3, 1, 4)
    )
    context = F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
    )
    attended = self.out(context.transpose(1, 2).reshape(b, length, hidden))
    h = self.norm1(h + F.dropout(attended, self.dropout, self.training))
    inner = self.outer(F.gelu(self.inner(h)))
    return self.norm2(h + F.dropout(inner, self.dropout, self.training))


class Bert(nn.Module):
  """HF BertModel's encoder (absolute positions, one token type) + mean pooling + linear head."""

  def __init__(
      self,
      num_layers: int,
      num_classes: int,
      vocab: int = 30522,
      hidden: int = 384,
      heads: int = 12,
      intermediate: int = 1536,
      max_positions: int = 512,
      dropout: float = 0.1,
  ):
    super().__init__()
    self.word = nn.Embedding(vocab, hidden)
    self.position = nn.Embedding(max_positions, hidden)
    self.token_type = nn.Embedding(2, hidden)
    self.norm = nn.LayerNorm(hidden, eps=1e-12)
    self.dropout = dropout
    self.layers = nn.ModuleList(
        BertLayer(hidden, heads, intermediate, dropout) for _ in range(num_layers)
    )
    self.classifier = nn.Linear(hidden, num_classes)

  def forward(self, ids):
    keep = ids != 0
    positions = torch.arange(ids.shape[1], device=ids.device)
    h = self.word(ids) + self.position(positions)[None] + self.token_type(torch.zeros_like(ids))
    h = F.dropout(self.norm(h), self.dropout, self.training)
    mask = keep[:, None, None, :]  # True = attend, broadcast over heads and queries
    for layer in self.layers:
      h = layer(h, mask)
    weights = keep[..., None].to(h.dtype)
    pooled = (h * weights).sum(1) / weights.sum(1).clamp_min(1e-9)
    return self.classifier(F.dropout(pooled, self.dropout, self.training))


def kd_loss(student_logits, teacher_logits, labels, *, temperature: float, alpha: float):
  s, t = student_logits.float(), teacher_logits.float()
  kd = (
      F.kl_div(
          F.log_softmax(s / temperature, -1),
          F.log_softmax(t / temperature, -1),
          reduction="batchmean",
          log_target=True,
      )
      * temperature**2
  )
  return alpha * F.cross_entropy(s, labels) + (1 - alpha) * kd


class TorchKDStep:
  """One callable KD step; `compile=True` wraps both nets in `torch.compile` (inductor)."""

  def __init__(
      self,
      teacher: nn.Module,
      student: nn.Module,
      optimizer_factory,
      *,
      device: str,
      bf16: bool,
      compile: bool,
      temperature: float = 4.0,
      alpha: float = 0.5,
  ):
    self.teacher = teacher.to(device).eval()
    self.student = student.to(device).train()
    for p in self.teacher.parameters():
      p.requires_grad_(False)
    self.optimizer = optimizer_factory(self.student.parameters())
    self.forward_teacher = torch.compile(self.teacher) if compile else self.teacher
    self.forward_student = torch.compile(self.student) if compile else self.student
    self.device, self.temperature, self.alpha = device, temperature, alpha
    self.autocast = (
        (lambda: torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16))
        if bf16
        else (contextlib.nullcontext)
    )

  def __call__(self, x, labels):
    with self.autocast():
      with torch.no_grad():
        teacher_logits = self.forward_teacher(x)
      loss = kd_loss(
          self.forward_student(x),
          teacher_logits,
          labels,
          temperature=self.temperature,
          alpha=self.alpha,
      )
    self.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    self.optimizer.step()
    return loss

  def synchronize(self):
    if self.device.startswith("cuda"):
      torch.cuda.synchronize()
