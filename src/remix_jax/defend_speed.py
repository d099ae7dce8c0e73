"""How fast ``defend`` runs: FLOPs per image, timed calls, a row per batch, its table.

For ``python -m bench.defend_sizes``: jitted :func:`remix_jax.defense.defend` with its
default chunking (``chunk="auto"``, what users get), one warm-up call (compilation),
then the median of the timed calls (:func:`remix_jax.timing.timed`) -> images/s. FLOPs
per image come from XLA's cost analysis of the one-pass program (``chunk=None``: XLA
counts a loop's body once, not per chunk), hence the achieved GFLOP/s, also as a
fraction of the machine's ceiling (:func:`remix_jax.timing.matmul_ceiling`). The result
renders as Markdown (:func:`markdown`) from its numbers alone.
"""

from __future__ import annotations

from remix_jax.timing import timed


def flops_per_image(params, key, x) -> float:
    """XLA's FLOP count of one pass of ``defend`` over the batch, per image.

    Args:
      params: the :class:`~remix_jax.defense.RemixParams`.
      key: ``defend``'s PRNG key.
      x: (B, H, W, C) float32 images in [0, 1].

    Returns:
      The FLOPs of ``defend(params, key, x, chunk=None)`` divided by B.
    """
    import jax

    from remix_jax.defense import defend

    one_pass = jax.jit(lambda p, k, v: defend(p, k, v, chunk=None))
    cost = one_pass.lower(params, key, x).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost["flops"]) / x.shape[0]


def time_defend(params, key, x, repeats: int) -> tuple[float, list[float]]:
    """Times jitted ``defend(params, key, x)`` (``chunk="auto"``) on (B, H, W, C) ``x``.

    Returns:
      (the warm-up call's seconds, the ``repeats`` timed calls' seconds).
    """
    import jax

    from remix_jax.defense import defend

    run = jax.jit(lambda p, k, v: defend(p, k, v))  # chunk="auto", what users get
    _, warm_up = timed(run, params, key, x)
    return warm_up, [timed(run, params, key, x)[1] for _ in range(repeats)]


def network(params, image_shape: tuple[int, int, int]) -> dict:
    """What a measured REMIX is: image_shape, n_masks, both networks' configs, the
    parameter count of the two together (``params``: a
    :class:`~remix_jax.defense.RemixParams` for (H, W, C) ``image_shape`` images)."""
    from remix_jax import objectives

    return {
        "image_shape": list(image_shape),
        "n_masks": params.n_masks,
        "reformer": params.reformer_config.to_dict(),
        "inpainter": params.inpainter_config.to_dict(),
        "parameters": objectives.param_count(params.reformer)
        + objectives.param_count(params.inpainter),
    }


def batch_row(params, key, x, repeats: int, ceiling: float) -> dict:
    """``defend``'s speed on one batch.

    Args:
      params: the :class:`~remix_jax.defense.RemixParams`.
      key: ``defend``'s PRNG key.
      x: (B, H, W, C) float32 images in [0, 1].
      repeats: timed calls (the median is kept).
      ceiling: the machine's GFLOP/s (:func:`remix_jax.timing.matmul_ceiling`).

    Returns:
      image ("HxWxC"), n_masks, batch, chunk (the one ``"auto"`` picks), warm-up
      seconds, the median and every timed call's seconds, images/s, FLOPs per image,
      GFLOP/s, the ceiling and the fraction of it reached.
    """
    import jax
    import numpy as np

    from remix_jax.defense import CPU_CHUNK

    batch = x.shape[0]
    flops = flops_per_image(params, key, x)
    warm_up, times = time_defend(params, key, x, repeats)
    seconds = float(np.median(times))
    achieved = flops * batch / seconds / 1e9
    return {
        "image": "{}x{}x{}".format(*x.shape[1:]),
        "n_masks": params.n_masks,
        "batch": batch,
        "chunk": CPU_CHUNK if jax.default_backend() == "cpu" else None,
        "warm_up_seconds": round(warm_up, 3),
        "seconds": round(seconds, 5),
        "timed_seconds": [round(t, 5) for t in times],
        "images_per_s": round(batch / seconds, 2),
        "flops_per_image": round(flops),
        "gflop_per_s": round(achieved, 1),
        "ceiling_gflop_per_s": round(ceiling, 1),
        "fraction_of_ceiling": round(achieved / ceiling, 3),
    }


def markdown(result: dict) -> str:
    """The result of ``bench.defend_sizes`` as a Markdown table with its provenance."""
    lines = [
        "# `defend()` at bigger images",
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {result['machine']}  ",
        f"jax {result['jax']}, jaxlib {result['jaxlib']}, commit {result['git_commit']}, "
        f"{result['date']}  ",
        f"REMIX: reformer + n masks, K = 1, with the defaults derived for an unknown dataset "
        f"of each size; {result['weights']}.  ",
        f"Median of {result['repeats']} timed calls after a warm-up call; FLOPs from XLA's "
        "cost analysis; ceiling: a 2048 x 2048 float32 matmul timed before each size. "
        f"Bench wall time {result['wall_seconds']} s; 1-minute "
        f"load average {result['load_average'][0]} at the start, {result['load_average'][1]} "
        "at the end.",
        "",
        "| image | n | batch | images/s | GFLOP/image | GFLOP/s | ceiling GFLOP/s | of ceiling |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['image']} | {row['n_masks']} | {row['batch']} | {row['images_per_s']:,} "
            f"| {row['flops_per_image'] / 1e9:.3f} | {row['gflop_per_s']} "
            f"| {row['ceiling_gflop_per_s']} | {row['fraction_of_ceiling']:.0%} |"
        )
    return "\n".join(lines) + "\n"
