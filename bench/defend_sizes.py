"""``defend()`` at bigger images: ``python -m bench.defend_sizes``.

For each of --sizes (default 28x28x1, 32x32x3, 64x64x3, 224x224x3) the spec the
project derives for an unknown dataset of that shape (``datasets.derive_spec``, as
``sources.resolve`` registers a folder) and REMIX with that spec's standard reformer
and inpainter (``components.default_autoencoder``) and n, K = 1, its weights randomly
initialised (``components.init_remix``: no network here has data-dependent control
flow, so its speed does not depend on the weights); random images in [0, 1].

At each of --batches: ``jax.jit(defend)`` with its default chunking (``chunk="auto"``,
what users get), one warm-up call (compilation), then the median of --repeats timed
calls (``block_until_ready``) -> images/s; FLOPs per image from XLA's cost analysis of
the one-pass program (``chunk=None``: XLA counts a loop's body once, not per chunk),
hence the achieved GFLOP/s, also as a fraction of a 2048 x 2048 float32 matmul timed
before each size (the machine's practical ceiling at that moment: the CPU may be
shared, so the JSON also records the load average at the start and the end).

Writes results/bench/defend_sizes_<platform>.json and .md atomically (--out) and
prints each row as it is measured (the measurement and the table:
remix_jax.defend_speed).
"""

from __future__ import annotations

import argparse
import os
import re
import time

from remix_jax.cli import HelpFormatter, check_output_path, nonnegative_int, positive_int

DEFAULT_SIZES = ("28x28x1", "32x32x3", "64x64x3", "224x224x3")
NUM_CLASSES = 10  # the derived spec's class count does not enter defend
WEIGHTS_NOTE = (
    "randomly initialised weights (components.init_remix): defend has no data-dependent "
    "control flow, so its speed does not depend on the weights; random images in [0, 1]"
)


def image_shape(text: str) -> tuple[int, int, int]:
    """``"HxWxC"`` -> (H, W, C); argparse type of --sizes (what ``derive_spec`` takes)."""
    from remix_jax import datasets  # imports no JAX

    match = re.fullmatch(r"(\d+)x(\d+)x([13])", text)
    if match and min(int(match[1]), int(match[2])) < datasets.MIN_DERIVED_SIZE:
        raise argparse.ArgumentTypeError(
            f"{text}: height and width must be >= {datasets.MIN_DERIVED_SIZE}"
        )
    if not match:
        raise argparse.ArgumentTypeError(f"expected HxWxC, C 1 or 3 (e.g. 64x64x3), got {text!r}")
    return tuple(int(g) for g in match.groups())


def derived_dataset(shape: tuple[int, int, int]) -> str:
    """Registers (once) the spec derived for unknown data of ``shape``; its name."""
    from remix_jax import datasets

    name = "derived_{}x{}x{}".format(*shape)
    if name not in datasets.names():
        datasets.register(
            datasets.derive_spec(
                name, shape, NUM_CLASSES, source="random images (bench.defend_sizes)"
            )
        )
    return name


def measure(shape, batches, repeats: int, ceiling: float, seed: int) -> tuple[dict, list[dict]]:
    """(the networks' description, one row per batch size) for images of ``shape``."""
    import jax

    from remix_jax import components, defend_speed

    params = components.init_remix(jax.random.key(seed), derived_dataset(shape))
    rows = []
    for batch in batches:
        image_key, defend_key = jax.random.split(jax.random.fold_in(jax.random.key(seed), batch))
        x = jax.random.uniform(image_key, (batch, *shape))
        row = defend_speed.batch_row(params, defend_key, x, repeats, ceiling)
        rows.append(row)
        print(
            f"{row['image']} batch {batch}: {row['images_per_s']:,.2f} images/s, "
            f"{row['flops_per_image'] / 1e9:.3f} GFLOP/image, {row['gflop_per_s']:.1f} GFLOP/s "
            f"(warm-up {row['warm_up_seconds']:.1f} s)",
            flush=True,
        )
    return defend_speed.network(params, shape), rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    p.add_argument(
        "--sizes",
        type=image_shape,
        nargs="+",
        default=None,
        help=f"image shapes HxWxC, C 1 or 3 (default: {' '.join(DEFAULT_SIZES)})",
    )
    p.add_argument(
        "--batches", type=positive_int, nargs="+", default=[1, 8, 32], help="images per call"
    )
    p.add_argument(
        "--repeats", type=positive_int, default=5, help="timed calls per batch (median kept)"
    )
    p.add_argument("--seed", type=nonnegative_int, default=0, help="weights, images and masks")
    p.add_argument(
        "--out",
        default=None,
        help="path without extension (default: results/bench/defend_sizes_<platform>)",
    )
    args = p.parse_args(argv)
    # argparse reads "--repeats=--" as an empty list of values, skipping the type
    for name in ("sizes", "batches", "repeats", "seed"):
        if getattr(args, name) == []:
            p.error(f"argument --{name}: expected a value")
    sizes = args.sizes or [image_shape(s) for s in DEFAULT_SIZES]
    started = time.perf_counter()
    from remix_jax import runtime

    runtime.configure()
    runtime.use_full_precision()
    import jax
    import jaxlib

    from remix_jax import defend_speed, provenance, result_files
    from remix_jax.timing import matmul_ceiling

    out = args.out or os.path.join("results", "bench", f"defend_sizes_{jax.default_backend()}")
    check_output_path(out)  # before minutes of timing
    load_before = os.getloadavg()  # the CPU may be shared: say how busy it was
    networks, rows = [], []
    for shape in sizes:
        # timed again before each size: on a shared CPU the machine's speed moves
        ceiling = matmul_ceiling(args.repeats)
        print(f"matmul ceiling: {ceiling:.1f} GFLOP/s", flush=True)
        network, shape_rows = measure(shape, args.batches, args.repeats, ceiling, args.seed)
        networks.append(network)
        rows.extend(shape_rows)
    result = {
        "what": "defend (reformer + n masks, K=1), jitted, chunk auto",
        "weights": WEIGHTS_NOTE,
        "repeats": args.repeats,
        "seed": args.seed,
        "networks": networks,
        "rows": rows,
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        # 1-minute load average when the run started and ended (the machine's other jobs)
        "load_average": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        **provenance.stamp(),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    result_files.write_json(out + ".json", result)
    result_files.write_text(out + ".md", defend_speed.markdown(result))
    print(f"-> {out}.json, {out}.md")


if __name__ == "__main__":
    main()
