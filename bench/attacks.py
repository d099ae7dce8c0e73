"""Attack speed and convergence on a shipped classifier: ``python -m bench.attacks``.

throughput: iterations x images per second of CW-L2 and EAD at --batch (early abort
  off, one search step, timed after compilation).
convergence: success rate and mean distortion on --num-examples images for each
  search-steps x iterations setting of --grid, at each kappa of --confidences, so the
  sweep's CPU preset can be chosen where the numbers match the full settings.
compaction: full attacks (each --grid setting, each kappa) on --num-examples images
  with the host loop's compaction of finished examples off and on: wall time, and
  whether the results agree (they must: same success, same images to 1e-4).
--dataset picks the classifier (MNIST: MagNet's CNN; CIFAR-10: the narrow ResNet-9).
Writes results/bench/attacks_<part>_<platform>[_cifar10].json (and prints a table).
"""

from __future__ import annotations

import argparse
import sys

from bench import common
from remix_jax import datasets
from remix_jax.cli import (
    DATA_DIR_HELP,
    attack_iterations,
    nonnegative_float,
    positive_int,
    search_steps,
)


def _parser() -> argparse.ArgumentParser:
    p = common.step_parser(__doc__, ["throughput", "convergence", "compaction"], "throughput batch")
    p.add_argument("--num-examples", type=positive_int, default=100, help="convergence images")
    p.add_argument(
        "--grid",
        default="1x100,3x1000,5x1000,9x1000,9x10000",
        help="search steps x iterations settings (convergence)",
    )
    p.add_argument("--confidences", type=nonnegative_float, nargs="+", default=[0.0, 20.0])
    p.add_argument("--beta", type=nonnegative_float, default=0.1, help="EAD's L1 weight")
    p.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    common.add_out_flag(p, "results/bench/attacks_<part>_<backend>[_cifar10].json")
    return p


def _grid(text: str) -> list[tuple[int, int]]:
    """``"1x100,9x1000"`` -> [(1, 100), (9, 1000)]; exits with one line unless each
    setting is a pair within the attacks' bounds (or a run fails hours in)."""
    try:
        pairs = [tuple(g.split("x")) for g in text.split(",")]
        if any(len(pair) != 2 for pair in pairs):
            raise ValueError(text)
        return [(search_steps(s), attack_iterations(i)) for s, i in pairs]
    except (ValueError, argparse.ArgumentTypeError) as e:
        why = f" ({e})" if isinstance(e, argparse.ArgumentTypeError) else ""
        sys.exit(f"error: --grid must look like 1x100,9x1000, got {text!r}{why}")


def main(argv=None) -> None:
    args = _parser().parse_args(argv)
    grid = _grid(args.grid)
    common.configure(full_precision=True)
    suffix = datasets.file_suffix(args.dataset)
    out = common.result_path(args.out, f"results/bench/attacks_{args.part}_<backend>{suffix}.json")
    from remix_jax import provenance

    part = {"throughput": _throughput, "compaction": _compaction, "convergence": _convergence}
    n = args.batch if args.part == "throughput" else args.num_examples
    pre, x, y = common.setup(args.dataset, n, args.data_dir)
    rows = []
    for row, line in part[args.part](args, grid, pre.logits_fn, x, y):
        rows.append(row)  # saved after every row: an interrupted run keeps what it measured
        payload = {"part": args.part, "dataset": args.dataset, "rows": rows, "beta": args.beta}
        common.write_json(out, {**payload, **provenance.stamp()})
        print(line, flush=True)
    print(f"-> {out}")


def _attacks(beta: float) -> dict:
    """{"cw", "ead"}: the attack functions (EAD with L1 weight ``beta``)."""
    from remix_jax.attacks import cw_l2, ead

    return {"cw": cw_l2, "ead": lambda *a, **k: ead(*a, beta=beta, **k)}


def _grid_runs(args, grid):
    """(attack, its keywords) for every --attacks, kappa of --confidences and --grid
    setting, in that nesting."""
    for name in args.attacks:
        for kappa in args.confidences:
            for steps, iterations in grid:
                yield (
                    name,
                    dict(confidence=kappa, binary_search_steps=steps, max_iterations=iterations),
                )


def _label(name: str, settings: dict) -> str:
    return (
        f"{name} kappa={settings['confidence']:g} "
        f"{settings['binary_search_steps']}x{settings['max_iterations']}"
    )


def _throughput(args, grid, logits_fn, x, y):
    """(row, line) per attack: iteration-images per second of one search step."""
    attacks = _attacks(args.beta)
    for name in args.attacks:
        settings = dict(max_iterations=args.iterations, binary_search_steps=1, abort_early=False)
        # compile with a short run of the same shapes, then time the real one
        common.timed(attacks[name], logits_fn, x, y, **settings)
        _, seconds = common.timed(attacks[name], logits_fn, x, y, **settings)
        rate = args.iterations * len(x) / seconds
        row = {
            "attack": name,
            "batch": len(x),
            "iterations": args.iterations,
            "seconds": round(seconds, 3),
            "iteration_images_per_s": round(rate, 1),
            "steps_per_s": round(args.iterations / seconds, 3),
        }
        yield (
            row,
            (
                f"{name}: {rate:,.0f} iteration-images/s ({args.iterations / seconds:.2f} "
                f"steps/s at batch {len(x)})"
            ),
        )


def _compaction(args, grid, logits_fn, x, y):
    """(row, line) per grid run: the host loop without and with compaction."""
    import numpy as np

    attacks = _attacks(args.beta)
    for name, settings in _grid_runs(args, grid):
        (plain, t_plain), (packed, t_packed) = (
            common.timed(attacks[name], logits_fn, x, y, compact=c, loop="host", **settings)
            for c in (False, True)
        )
        difference = np.asarray(plain.adversarial) - np.asarray(packed.adversarial)
        row = {
            "attack": name,
            **settings,
            "images": len(x),
            "seconds_plain": round(t_plain, 1),
            "seconds_compacted": round(t_packed, 1),
            "speedup": round(t_plain / t_packed, 2),
            "same_success": bool(np.array_equal(plain.success, packed.success)),
            "max_abs_difference": float(np.max(np.abs(difference))),
        }
        yield (
            row,
            (
                f"{_label(name, settings)}: {t_plain:.0f} s -> {t_packed:.0f} s "
                f"({row['speedup']}x), same success {row['same_success']}, "
                f"max diff {row['max_abs_difference']:.1e}"
            ),
        )


def _convergence(args, grid, logits_fn, x, y):
    """(row, line) per grid run: success rate and mean distortions of the successes."""
    import numpy as np

    attacks = _attacks(args.beta)
    for name, settings in _grid_runs(args, grid):
        result, seconds = common.timed(attacks[name], logits_fn, x, y, **settings)
        ok = np.asarray(result.success)
        row = {
            "attack": name,
            **settings,
            "images": len(x),
            "success": float(ok.mean()),
            "seconds": round(seconds, 1),
        }
        for norm in ("l0", "l1", "l2", "linf"):
            values = np.asarray(getattr(result, norm))[ok]
            row[f"mean_{norm}"] = float(values.mean()) if ok.any() else None
        yield (
            row,
            (
                f"{_label(name, settings)}: success {row['success']:.1%}, "
                f"L2 {row['mean_l2'] or float('nan'):.3f}, "
                f"L1 {row['mean_l1'] or float('nan'):.2f}, {seconds:.0f} s"
            ),
        )


if __name__ == "__main__":
    main()
