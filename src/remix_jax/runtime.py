"""Process-wide runtime set-up: the XLA CPU flags that make convolutions fast.

Measured on a 2-core AMD Zen 4 with jaxlib 0.10.2: XLA's default CPU convolutions
(YNNPACK) run on one core and are 2-4x slower with VALID padding. The flag
``--xla_cpu_experimental_ynn_fusion_type=individual_dot`` makes XLA fall back to
Eigen convolutions on every core (~2x faster for the 3x3 convolutions used here).

XLA reads ``XLA_FLAGS`` when the first backend is created (the first computation or
``jax.devices()`` call), not when ``jax`` is imported, so :func:`configure` works
as long as it runs before any array is made. Every CLI in ``train/``, ``eval/`` and
``bench/`` calls it first. Library users opt in by calling it themselves; setting
``REMIX_JAX_CPU_FLAGS=0`` turns it into a no-op.
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)

CPU_CONV_FLAG = "--xla_cpu_experimental_ynn_fusion_type=individual_dot"
# jaxlib releases on which the flag exists; XLA aborts on unknown flags, so the
# flag is only added where it was checked to be known.
_FLAG_KNOWN_FOR_JAXLIB = ((0, 10), (0, 12))


def _jaxlib_version() -> tuple[int, int]:
    import jaxlib

    major, minor = jaxlib.__version__.split(".")[:2]
    return int(major), int(minor)


def _add_flag(flags: str, flag: str) -> str:
    name = flag.split("=")[0]
    kept = [f for f in flags.split() if f.split("=")[0] != name]
    return " ".join([*kept, flag])


def configure(*, cpu_conv_flag: bool = True, host_devices: int | None = None) -> str:
    """Sets ``XLA_FLAGS`` for this process before JAX starts its backend.

    Args:
      cpu_conv_flag: add :data:`CPU_CONV_FLAG` (ignored when the environment sets
        ``REMIX_JAX_CPU_FLAGS=0`` or the installed jaxlib is not known to accept it).
      host_devices: if given, split the CPU into this many XLA host devices
        (``--xla_force_host_platform_device_count``), used to test sharding.

    Returns:
      The resulting ``XLA_FLAGS`` string.

    Raises:
      RuntimeError: if a JAX backend already exists and the flags would change, so
        they would be ignored. (Calling it again with the same settings is a no-op.)
    """
    from jax._src import xla_bridge

    current = os.environ.get("XLA_FLAGS", "")
    flags = current
    low, high = _FLAG_KNOWN_FOR_JAXLIB
    wanted = cpu_conv_flag and os.environ.get("REMIX_JAX_CPU_FLAGS", "1") != "0"
    if wanted and low <= _jaxlib_version() < high:
        flags = _add_flag(flags, CPU_CONV_FLAG)
    elif wanted:
        logger.info("jaxlib %s: CPU convolution flag not applied", _jaxlib_version())
    if host_devices is not None:
        if host_devices < 1:
            raise ValueError(f"host_devices must be >= 1, got {host_devices}")
        flags = _add_flag(flags, f"--xla_force_host_platform_device_count={host_devices}")
    if xla_bridge.backends_are_initialized():
        if flags.split() == current.split():
            return current
        raise RuntimeError(
            "remix_jax.runtime.configure() must run before the first JAX computation "
            "(XLA has already read XLA_FLAGS)."
        )
    os.environ["XLA_FLAGS"] = flags.strip()
    return os.environ["XLA_FLAGS"]


def use_full_precision() -> None:
    """Makes float32 matmuls and convolutions run in full float32 on every backend.

    On NVIDIA GPUs JAX's default precision uses TF32 (10-bit mantissa) inputs. An
    attack that stops exactly at the decision boundary (kappa = 0) then finds
    examples that another machine classifies correctly: 78.5% of the MNIST CW
    examples crafted at kappa = 0 on an H100 with the default were classified
    correctly by the same weights on a CPU. Attacks and evaluations call this.
    """
    import jax

    jax.config.update("jax_default_matmul_precision", "highest")
