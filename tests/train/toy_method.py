"""A toy method that uses every extension point of engine v2, and a whole-split evaluator.

prepare → constants (class prior and mean pixel of the train split); a schedule in epochs from
the run context (the gate learns during the first epoch only; λ cosine over total_steps); its own
module with BatchNorm (updated in train mode through `Aux.model_state`); an EMA of the student's
params *and* BatchNorm statistics in `state` (from `UpdateIO`); per-example metrics of the EMA
student through `apply_student`; and the evaluator `SplitSummary` over a whole split.
"""

from __future__ import annotations

import dataclasses
import time
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from kd_jax import metrics
from kd_jax.losses import logits as logit_losses
from kd_jax.methods import base
from kd_jax.train import prepare
from tests.train import helpers


class Gate(nn.Module):

  @nn.compact
  def __call__(self, x, *, train: bool):
    x = nn.Dense(4)(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.5)(x)
    return nn.sigmoid(nn.Dense(1)(nn.relu(x)))[:, 0]


def gate_weight(step, total_steps):
  """λ(step) = (1 + cos(π·step/T)) / 2."""
  return 0.5 * (1.0 + jnp.cos(jnp.pi * step / total_steps))


@dataclasses.dataclass(frozen=True)
class ToyEverything(base.Method):
  outputs: ClassVar[frozenset] = frozenset({"logits", "embedding"})
  ema_decay: float = 0.5
  seconds_per_step: float = 0.0  # > 0: a host callback sleeps, so a test can SIGKILL mid-run

  def prepare(self, ctx):
    def per_example(batch):
      x = ctx.model_input(batch)
      return {"pixel_mean": jnp.mean(x.reshape(x.shape[0], -1), axis=1), "label": batch["label"]}

    out = ctx.map_split(per_example, "train")
    counts = np.bincount(out["label"], minlength=ctx.context.num_classes)
    return {
        "class_prior": (counts / counts.sum()).astype(np.float32),
        "pixel_mean": np.asarray(out["pixel_mean"].mean(), np.float32),
    }

  def init(self, rng, io):
    gate = Gate().init(rng, io.student["embedding"], train=False)
    return base.Variables(
        params={"gate": gate["params"]},
        state={"ema": jax.tree.map(jnp.asarray, io.student_variables)},
        model_state={"batch_stats": gate["batch_stats"]},
    )

  def optimizer(self, student_tx, context):
    first_epoch = lambda count: count < context.steps_per_epoch
    gate_tx = optax.transforms.conditionally_mask(optax.sgd(0.5), first_epoch)
    return optax.multi_transform(
        {"student": student_tx, "method": gate_tx}, {"student": "student", "method": "method"}
    )

  def loss(self, params, state, io):
    if self.seconds_per_step:
      jax.debug.callback(lambda: time.sleep(self.seconds_per_step))
    gate, new_collections = Gate().apply(
        {"params": params["gate"], **io.model_state},
        io.student["embedding"],
        train=True,
        mutable=["batch_stats"],
    )
    # Logit adjustment by the train split's class prior (a constant from `prepare`).
    logits = io.student["logits"] + jnp.log(io.constants["class_prior"] + 1e-6)
    ce = jnp.mean(logit_losses.cross_entropy(logits, io.batch["label"]))
    weight = gate_weight(io.step, io.context.total_steps)
    loss = ce + weight * jnp.mean(gate)
    return loss, base.Aux(
        metrics={
            "ce": ce,
            "lambda": weight,
            "epoch": io.context.epoch(io.step),
            "pixel_mean": io.constants["pixel_mean"],
        },
        model_state=new_collections,
    )

  def update_state(self, state, io):
    current = {"params": io.params["student"], **io.student_model_state}
    d = self.ema_decay
    return {"ema": jax.tree.map(lambda e, c: d * e + (1 - d) * c, state["ema"], current)}

  def eval_metrics(self, params, state, io):
    out = super().eval_metrics(params, state, io)
    ema_logits = io.apply_student(state["ema"], io.inputs)["logits"]
    out["ema_accuracy"] = metrics.accuracy(ema_logits, io.batch["label"])
    return out


@dataclasses.dataclass
class SplitSummary:
  """A whole-split evaluator: examples seen, and the class histogram of the student's argmax."""

  num_classes: int = 10

  def __call__(self, run):
    variables = run.student_variables()
    forward, input_key = run.forward, run.input_key
    from kd_jax.train import forward as forward_lib  # pylint: disable=g-import-not-at-top

    @jax.jit
    def predict(batch):
      x = forward_lib.model_input(batch, input_key, jnp.float32)
      params = dict(variables)
      return {
          "argmax": jnp.argmax(forward.student_eval(params.pop("params"), params, x)["logits"], -1)
      }

    out = prepare.map_batches(predict, run.all_batches(), description=run.name)
    histogram = np.bincount(out["argmax"], minlength=self.num_classes)
    return {
        "examples": int(out["argmax"].shape[0]),
        "largest_class_share": float(histogram.max() / histogram.sum()),
        "previous": float(len(run.previous)),
    }


def toy_config(**overrides):
  import ml_collections  # pylint: disable=g-import-not-at-top

  settings = dict(
      total_steps=12,
      checkpoint_every=4,
      batch_size=64,
      max_to_keep=3,
      validation_split="validation",
  )
  c = helpers.tiny_config(**{**settings, **overrides})
  c.method = ml_collections.ConfigDict({"name": "tests.train.toy_method:ToyEverything"})
  c.evals = ml_collections.ConfigDict(
      {
          "validation": {"kind": "metrics", "split": "validation", "every": 6},
          "summary": {"kind": "tests.train.toy_method:SplitSummary", "split": "validation"},
      }
  )
  return c


__all__ = ["Gate", "SplitSummary", "ToyEverything", "gate_weight", "toy_config"]


_CACHED_BIAS = {}


class CachedPretrainedCNN(helpers.TinyCNN):
  """A TinyCNN whose `load_pretrained` returns one process-wide cached array (as a checkpoint
  cache would): the engine must not let the train step donate it away."""

  def load_pretrained(self, variables):
    params = dict(variables["params"])
    dense = dict(params["Dense_0"])
    if "bias" not in _CACHED_BIAS:
      _CACHED_BIAS["bias"] = jnp.full(dense["bias"].shape, 0.01, dense["bias"].dtype)
    dense["bias"] = _CACHED_BIAS["bias"]
    params["Dense_0"] = dense
    return {**variables, "params": params}
