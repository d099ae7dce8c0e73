"""What each defense costs at test time: ``python -m bench.defense_cost [--apegan]``.

Every defense eval.clean scores (``evaluation.defense_suite``: the bare classifier,
REMIX's reformer, MagNet's reformer and MagNet with its detectors, APE-GAN and
Defense-GAN with --apegan / --defensegan, REMIX's mask-inpaint K = 1 without and with
its reformer), timed on the same --batch-size test images in one run: one call that
compiles, then the median of --repeats calls of what the defense does to an image
(its prediction and, for MagNet, its rejection) -> milliseconds per image and
images per second, the classifier's own pass included. Writes
results/bench/defense_cost_<platform>[_<dataset>].{json,md}.
"""

from __future__ import annotations

import os

from bench import common
from remix_jax import cli, datasets
from remix_jax.result_files import write_text


def parse(argv):
    p = cli.parser(__doc__)
    cli.add_dataset_flag(p)
    cli.add_source_flags(p)
    cli.add_baseline_flags(p)
    p.add_argument("--batch-size", type=cli.positive_int, default=500, help="images per call")
    p.add_argument("--repeats", type=cli.positive_int, default=5, help="timed calls per defense")
    p.add_argument("--out", default=None, help="JSON path (default: results/bench/...)")
    return p.parse_args(argv)


def seconds_per_call(defense, key, x, repeats: int) -> float:
    """Median wall seconds of ``defense``'s prediction (and rejection, if it has one)
    on the (B, H, W, C) images ``x``, after one call that compiles."""
    import numpy as np

    def call():
        out = [defense.predict(key, x)]
        return out + ([defense.reject(key, x)] if defense.reject is not None else [])

    common.timed(call)  # compiles
    return float(np.median([common.timed(call)[1] for _ in range(repeats)]))


def rows_of(suite: dict, key, x, repeats: int) -> list[dict]:
    """One row per defense of ``suite`` (name -> ``evaluation.Defense``): its
    milliseconds per image and images per second on ``x``."""
    rows = []
    for name, defense in suite.items():
        seconds = seconds_per_call(defense, key, x, repeats)
        rows.append({
            "defense": name,
            "randomized": defense.randomized,
            "ms_per_image": 1000 * seconds / len(x),
            "images_per_second": len(x) / seconds,
        })  # fmt: skip
        print(f"{name}: {rows[-1]['ms_per_image']:.3f} ms per image", flush=True)
    return rows


def markdown(result: dict) -> str:
    lines = [
        f"Defense cost at test time, {result['dataset']}: batches of {result['batch_size']} "
        f"test images, median of {result['repeats']} calls after one that compiles "
        "(the classifier's pass included)",
        "",
        "| defense | ms per image | images per second | x the bare classifier |",
        "|---|---|---|---|",
    ]
    bare = result["rows"][0]["ms_per_image"]
    for row in result["rows"]:
        lines.append(
            f"| {row['defense']} | {row['ms_per_image']:.3f} | {row['images_per_second']:.0f} "
            f"| {row['ms_per_image'] / bare:.1f} |"
        )
    lines += ["", f"Command: `{result['command']}`", "", f"Machine: {result['machine']}"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    args = parse(argv)
    common.configure(full_precision=True)
    import jax

    from remix_jax import data, eval_inputs, provenance
    from remix_jax.pretrained import load_pretrained

    default = os.path.join(
        "results", "bench", f"defense_cost_<backend>{datasets.file_suffix(args.dataset)}.json"
    )
    path = common.result_path(args.out, default)
    with cli.exit_on_load_errors():
        split = data.load_split(args.dataset, "test", args.data_dir)
        pre = load_pretrained(args.dataset, args.checkpoint_root)
    baselines = cli.load_baselines(args)
    suite = eval_inputs.defense_suite(args.dataset, pre, baselines, [1])
    x = data.to_float(split.images[: args.batch_size])
    rows = rows_of(suite, jax.random.key(0), x, args.repeats)
    result = {
        "dataset": args.dataset,
        "batch_size": len(x),
        "repeats": args.repeats,
        "rows": rows,
        **baselines.settings(),
        **provenance.stamp(),
    }
    common.write_json(path, result)
    write_text(path[: -len(".json")] + ".md", markdown(result))
    print(f"-> {path}")


if __name__ == "__main__":
    main()
