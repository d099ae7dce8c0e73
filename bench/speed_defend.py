"""``python -m bench.speed --part defend``: ``defend`` against the machine and torch.

Images per second of ``remix_jax.defend`` at the batch given (its default chunking,
and each of ``--chunks``), its FLOPs from XLA's cost analysis and its GFLOP/s against
a 2048 x 2048 float32 matmul timed in the same run (the machine's practical ceiling);
a profile of the layers it is made of; and the same defense in torch with the same
masks, checked equal to ours first.
"""

from __future__ import annotations

import sys

from bench.attack_steps import best_time

TORCH_TOLERANCE = 1e-4  # max |difference| allowed between our and torch's outputs


def part_defend(args, pre, x) -> list[dict]:
    """The rows of ``--part defend`` for (B, H, W, C) images ``x``, seconds rounded."""
    import jax

    remix = pre.remix
    key = jax.random.key(0)
    ceiling_row, ceiling = _ceiling(args.repeats)
    run, flops, defend_rows = _defend_rows(remix, key, x, args, ceiling)
    rows = [ceiling_row, *defend_rows, *_layer_rows(remix, key, x, args.repeats, ceiling)]
    rows.append(_torch_row(remix, key, x, run, flops, args.repeats, ceiling))
    for row in rows:
        row["seconds"] = round(row["seconds"], 4)
        print("  ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    return rows


def _ceiling(repeats: int) -> tuple[dict, float]:
    """The row of a 2048 x 2048 float32 matmul, and its GFLOP/s (not rounded)."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(1), (2048, 2048), jnp.float32)
    matmul = jax.jit(jnp.matmul)
    t = best_time(lambda: matmul(a, a), repeats)
    ceiling = 2 * 2048**3 / t / 1e9
    row = {
        "what": "matmul 2048x2048 float32 (ceiling)",
        "seconds": t,
        "gflop_per_s": round(ceiling, 1),
    }
    return row, ceiling


def _defend_rows(remix, key, x, args, ceiling: float):
    """(the jitted default ``defend``, its FLOPs per batch, one row per chunking)."""
    import jax

    from remix_jax import defend
    from remix_jax.defense import CPU_CHUNK

    run = jax.jit(lambda v: defend(remix, key, v))  # chunk="auto", what users get
    # FLOPs of the one-pass program: XLA counts a loop's body once, not per chunk
    one_pass = jax.jit(lambda v: defend(remix, key, v, chunk=None))
    cost = one_pass.lower(x).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    flops = float(cost["flops"])
    rows = []
    for chunk in ["auto", *args.chunks]:
        fn = (
            run
            if chunk == "auto"
            else jax.jit(
                lambda v, chunk=chunk: defend(remix, key, v, chunk=None if chunk == 0 else chunk)
            )
        )
        t = best_time(lambda fn=fn: fn(x), args.repeats)
        label = {"auto": f"auto = {CPU_CHUNK} on CPU", 0: "None: whole batch"}.get(chunk, chunk)
        rows.append(
            {
                "what": f"defend (reformer + {remix.n_masks} masks, K=1), chunk {label}",
                "seconds": t,
                "images_per_s": round(len(x) / t, 1),
                "flops_per_image": flops / len(x),
                "gflop_per_s": round(flops / t / 1e9, 1),
                "fraction_of_ceiling": round(flops / t / 1e9 / ceiling, 3),
            }
        )
    return run, flops, rows


def _layer_rows(remix, key, x, repeats: int, ceiling: float) -> list[dict]:
    """The layers ``defend`` is made of, alone, at the same batch."""
    import jax

    h, w, c = x.shape[1:]
    width = remix.inpainter_config.features[0]
    layers = {
        f"conv 3x3 {width}->{width}": (width, width),
        f"conv 3x3 {c + 1}->{width} (inpainter's first)": (c + 1, width),
        f"conv 3x3 {width}->{c} (last)": (width, c),
    }
    rows = []
    for what, (cin, cout) in layers.items():
        inp = jax.random.uniform(key, (len(x), h, w, cin))
        kernel = jax.random.normal(key, (3, 3, cin, cout)) * 0.1
        conv = jax.jit(
            lambda v, k: jax.lax.conv_general_dilated(
                v, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
            )
        )
        t = best_time(lambda inp=inp, kernel=kernel, conv=conv: conv(inp, kernel), repeats)
        layer_flops = 2 * len(x) * h * w * 9 * cin * cout
        rows.append(
            {
                "what": what,
                "seconds": t,
                "gflop_per_s": round(layer_flops / t / 1e9, 1),
                "fraction_of_ceiling": round(layer_flops / t / 1e9 / ceiling, 3),
            }
        )
    return rows


def _torch_row(remix, key, x, run, flops: float, repeats: int, ceiling: float) -> dict:
    """The same defense in torch, with our masks; exits if it differs from ``run``'s."""
    import jax
    import numpy as np

    from bench.torch_remix import torch_defense
    from remix_jax.masking import batch_random_masks

    h, w, c = x.shape[1:]
    masks = batch_random_masks(jax.random.fold_in(key, 0), len(x), (h, w, c), remix.n_masks)
    masks = np.moveaxis(np.asarray(masks, np.float32), 1, 0)  # (n, B, H, W, 1)
    torch_defend = torch_defense(remix, x, masks)
    gap = float(np.max(np.abs(torch_defend().permute(0, 2, 3, 1).numpy() - np.asarray(run(x)))))
    if gap > TORCH_TOLERANCE:
        sys.exit(f"error: the torch defense differs from ours by {gap:.2e}")
    t = best_time(torch_defend, repeats)
    return {
        "what": "defend in torch (same weights and masks)",
        "seconds": t,
        "images_per_s": round(len(x) / t, 1),
        "gflop_per_s": round(flops / t / 1e9, 1),
        "fraction_of_ceiling": round(flops / t / 1e9 / ceiling, 3),
        "max_abs_difference_to_ours": gap,
    }
