"""The XLA flags the test session and its subprocesses compile with.

Most of a test's time on CPU is XLA compiling tiny programs that then run a few steps, and LLVM's
optimisation of the generated code is the larger part of that compile time: without it a
program compiles in about half the time (a resnet8 train step: 2.5 s -> 1.5 s of CPU) and runs
at nearly the same speed at test sizes. Only the machine code's optimisation is turned off; the
XLA graph passes (fusion, layout, sharding) are the same as in any run, and so are the numbers a
test compares, up to floating-point rounding. The kernels are generated one by one, and at this
level an expression that XLA recomputes in two kernels need not round the same in both: code whose
result relied on that (`jnp.max`'s gradient; see `kd_jax.models.audio.global_max_pool`) is fragile
at any level, and this one showed it.
"""

FAST_COMPILE = "--xla_backend_optimization_level=0"


def xla_flags(devices: int = 1) -> str:
  """XLA_FLAGS for a test subprocess, with `devices` simulated CPU devices."""
  flags = [FAST_COMPILE]
  if devices > 1:
    flags.append(f"--xla_force_host_platform_device_count={devices}")
  return " ".join(flags)


def with_fast_compile(flags: str) -> str:
  """`flags` (an XLA_FLAGS value) with FAST_COMPILE added unless it sets the level itself."""
  if "--xla_backend_optimization_level" in flags:
    return flags
  return f"{flags} {FAST_COMPILE}".strip()
