"""Model size and cost: parameter counts, bytes, MACs and activation memory, measured by XLA.

Methods (stated here because the README's model table and the tests rely on them):

* **Parameters** are counted from `jax.eval_shape(model.init, ...)`: shapes only, no memory, so
  a 100 M-parameter model costs nothing to count. "params" is the trainable collection,
  "state" everything else (BatchNorm running statistics); Keras-era papers (SEA's Table 1)
  count both, PyTorch papers (RepDistiller, DiSK) count trainable tensors only (BN's scale and
  bias, not its running statistics).
* **Bytes** = Σ size × itemsize over every variable (float32 unless the model says otherwise).
* **MACs**, two counts of the inference forward pass (`train=False`), per example:
  - "xla_macs": XLA's HLO cost analysis of the jitted function, `flops / 2 / batch`. XLA counts
    only the multiply-adds a convolution really performs: taps that fall on the zero padding are
    skipped, and elementwise work (BN, ReLU, softmax) is added at one flop per element. On
    small maps the padding matters: ResNet18 on 32×32 is 484 M by XLA.
  - "macs": the convention of the papers and of the PyTorch counters they used (thop, ptflops):
    every convolution costs `output elements × kernel taps × input channels / groups`, padded taps
    included, and every matmul `output elements × contracted size`. Counted exactly from the
    jaxpr's `conv_general_dilated` and `dot_general` equations, so it is still measured from the
    program that runs, not from a formula per architecture. ResNet18 on 32×32: 555 M (DiSK).
* **Activation memory** = `temp_size_in_bytes` from the compiled forward pass' memory analysis
  (`compiled.memory_analysis()`): the scratch buffers XLA allocates besides arguments and
  outputs, i.e. the peak working set of intermediate activations after fusion and buffer reuse,
  for the example's batch size. It depends on the backend (CPU here); `largest_activation_bytes`
  gives the backend-independent size of the largest stage output.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.extend import core as jax_core


def count_parameters(variables: Any) -> int:
  """Number of scalars in a pytree of arrays or ShapeDtypeStructs."""
  return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(variables))


def count_bytes(variables: Any) -> int:
  return sum(
      math.prod(leaf.shape) * jnp.dtype(leaf.dtype).itemsize
      for leaf in jax.tree_util.tree_leaves(variables)
  )


def abstract_variables(model: nn.Module, example_input: Any) -> Any:
  """Variable shapes of `model` for `example_input`, without allocating or computing anything."""
  rngs = {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)}
  return jax.eval_shape(lambda x: model.init(rngs, x, train=False), example_input)


def _abstract(tree: Any) -> Any:
  return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), tree)


def forward_cost(
    model: nn.Module, example_input: Any, *, variables: Any = None, compile: bool = True
) -> dict[str, float]:
  """XLA's cost and memory analysis of the inference forward pass on `example_input`.

  Lowers (and with `compile=True` compiles) `model.apply(variables, x, train=False)` from
  shapes alone. Returns per-example "xla_macs" (flops / 2 / batch), "flops", and, when compiled,
  the temp/argument/output bytes of the compiled executable.
  """
  variables = abstract_variables(model, example_input) if variables is None else variables
  forward = jax.jit(lambda v, x: model.apply(v, x, train=False))
  lowered = forward.lower(_abstract(variables), _abstract(example_input))
  batch = jax.tree_util.tree_leaves(example_input)[0].shape[0]
  result: dict[str, float] = {}
  analysed = lowered
  if compile:
    analysed = lowered.compile()
    memory = analysed.memory_analysis()
    result.update(
        temp_bytes=float(memory.temp_size_in_bytes),
        argument_bytes=float(memory.argument_size_in_bytes),
        output_bytes=float(memory.output_size_in_bytes),
    )
  cost = analysed.cost_analysis()
  if isinstance(cost, (list, tuple)):  # older jax returned one dict per device program
    cost = cost[0]
  flops = float(cost["flops"])
  result.update(flops=flops, xla_macs=flops / 2 / batch)
  return result


def _count_dense_macs(jaxpr: jax_core.Jaxpr) -> int:
  """Σ over conv / matmul equations (recursing into sub-jaxprs) of the paper-convention MACs."""
  total = 0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "conv_general_dilated":
      kernel = eqn.invars[1].aval.shape
      out_channels = kernel[eqn.params["dimension_numbers"].rhs_spec[0]]
      # prod(kernel) / out_channels = kernel taps × input channels / groups.
      total += math.prod(eqn.outvars[0].aval.shape) * math.prod(kernel) // out_channels
    elif name == "dot_general":
      (lhs_contract, _), _ = eqn.params["dimension_numbers"]
      lhs = eqn.invars[0].aval.shape
      total += math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in lhs_contract)
    for param in eqn.params.values():
      for sub in param if isinstance(param, (list, tuple)) else (param,):
        if isinstance(sub, jax_core.ClosedJaxpr):
          total += _count_dense_macs(sub.jaxpr)
        elif isinstance(sub, jax_core.Jaxpr):
          total += _count_dense_macs(sub)
  return total


def dense_macs(model: nn.Module, example_input: Any, *, variables: Any = None) -> float:
  """Paper-convention MACs per example (padded taps included), counted from the jaxpr."""
  variables = abstract_variables(model, example_input) if variables is None else variables
  closed = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(variables, example_input)
  batch = jax.tree_util.tree_leaves(example_input)[0].shape[0]
  return _count_dense_macs(closed.jaxpr) / batch


def summary(model: nn.Module, example_input: Any, *, compile: bool = True) -> dict[str, Any]:
  """Parameters, bytes, MACs and activation memory of `model` on `example_input`.

  Args:
    model: a kd_jax model (any flax module whose `__call__(x, *, train)` returns a dict).
    example_input: an array or ShapeDtypeStruct with a leading batch axis (e.g. one 32×32×3
      image: `jnp.zeros((1, 32, 32, 3))`), or a dict of them for BERT.
    compile: also compile, to get the memory analysis (seconds for large models).

  Returns a dict with "params" (trainable), "state" (non-trainable, e.g. BN statistics),
  "total" (= params + state), "bytes" (all variables), "macs" (per example, paper convention),
  "xla_macs" (per example, XLA cost analysis), "flops" (XLA, whole batch),
  "largest_activation_bytes" (largest "features" entry, per example) and, when compiled,
  "activation_bytes" (XLA temp buffers for the whole example batch).
  """
  variables = abstract_variables(model, example_input)
  params = variables.get("params", {})
  state = {k: v for k, v in variables.items() if k != "params"}
  outputs = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, example_input)
  batch = jax.tree_util.tree_leaves(example_input)[0].shape[0]
  features = outputs.get("features") or []
  largest = max((count_bytes(f) for f in features), default=0) // max(batch, 1)
  cost = forward_cost(model, example_input, variables=variables, compile=compile)
  report = {
      "params": count_parameters(params),
      "state": count_parameters(state),
      "total": count_parameters(variables),
      "bytes": count_bytes(variables),
      "macs": dense_macs(model, example_input, variables=variables),
      "xla_macs": cost["xla_macs"],
      "flops": cost["flops"],
      "largest_activation_bytes": largest,
  }
  if compile:
    report["activation_bytes"] = cost["temp_bytes"]
  return report
