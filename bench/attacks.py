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

from remix_jax import datasets
from remix_jax.cli import (
    DATA_DIR_HELP,
    HelpFormatter,
    add_dataset_flag,
    attack_iterations,
    check_output_path,
    nonnegative_float,
    positive_int,
    search_steps,
)


def _settings(text: str) -> list[tuple[str, str]]:
    """``"1x100,9x1000"`` -> [("1", "100"), ("9", "1000")]; ValueError unless pairs."""
    pairs = [tuple(g.split("x")) for g in text.split(",")]
    if any(len(pair) != 2 for pair in pairs):
        raise ValueError(text)
    return pairs


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    p.add_argument("--part", choices=["throughput", "convergence", "compaction"], required=True)
    add_dataset_flag(p)
    p.add_argument("--attacks", nargs="+", choices=["cw", "ead"], default=["cw", "ead"])
    p.add_argument("--batch", type=positive_int, default=1000, help="throughput batch")
    p.add_argument(
        "--iterations", type=positive_int, default=50, help="timed throughput iterations"
    )
    p.add_argument("--num-examples", type=positive_int, default=100, help="convergence images")
    p.add_argument(
        "--grid",
        default="1x100,3x1000,5x1000,9x1000,9x10000",
        help="search steps x iterations settings (convergence)",
    )
    p.add_argument("--confidences", type=nonnegative_float, nargs="+", default=[0.0, 20.0])
    p.add_argument("--beta", type=nonnegative_float, default=0.1, help="EAD's L1 weight")
    p.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    try:  # each setting within the attacks' bounds, or a run fails hours in
        grid = [(search_steps(s), attack_iterations(i)) for s, i in _settings(args.grid)]
    except (ValueError, argparse.ArgumentTypeError) as e:
        why = f" ({e})" if isinstance(e, argparse.ArgumentTypeError) else ""
        sys.exit(f"error: --grid must look like 1x100,9x1000, got {args.grid!r}{why}")

    from remix_jax import runtime

    runtime.configure()
    runtime.use_full_precision()
    import jax
    import numpy as np

    from bench.common import setup, timed, write_json
    from remix_jax import provenance
    from remix_jax.attacks import cw_l2, ead

    suffix = datasets.file_suffix(args.dataset)
    out = args.out or f"results/bench/attacks_{args.part}_{jax.default_backend()}{suffix}.json"
    check_output_path(out)

    def save():  # after every row, so an interrupted run keeps what it measured
        write_json(
            out,
            {
                "part": args.part,
                "dataset": args.dataset,
                "rows": rows,
                "beta": args.beta,
                **provenance.stamp(),
            },
        )

    attacks = {"cw": cw_l2, "ead": lambda *a, **k: ead(*a, beta=args.beta, **k)}
    rows = []
    if args.part == "throughput":
        pre, x, y = setup(args.dataset, args.batch, args.data_dir)
        for name in args.attacks:
            settings = dict(binary_search_steps=1, abort_early=False)
            # compile with a short run of the same shapes, then time the real one
            timed(attacks[name], pre.logits_fn, x, y, max_iterations=args.iterations, **settings)
            _, seconds = timed(
                attacks[name], pre.logits_fn, x, y, max_iterations=args.iterations, **settings
            )
            rate = args.iterations * len(x) / seconds
            rows.append(
                {
                    "attack": name,
                    "batch": len(x),
                    "iterations": args.iterations,
                    "seconds": round(seconds, 3),
                    "iteration_images_per_s": round(rate, 1),
                    "steps_per_s": round(args.iterations / seconds, 3),
                }
            )
            save()
            print(
                f"{name}: {rate:,.0f} iteration-images/s ({args.iterations / seconds:.2f} "
                f"steps/s at batch {len(x)})"
            )
    elif args.part == "compaction":
        pre, x, y = setup(args.dataset, args.num_examples, args.data_dir)
        for name in args.attacks:
            for kappa in args.confidences:
                for steps, iterations in grid:
                    settings = dict(
                        confidence=kappa,
                        binary_search_steps=steps,
                        max_iterations=iterations,
                        loop="host",
                    )
                    runs = {}
                    for compact in (False, True):
                        runs[compact] = timed(
                            attacks[name], pre.logits_fn, x, y, compact=compact, **settings
                        )
                    (plain, t_plain), (packed, t_packed) = runs[False], runs[True]
                    row = {
                        "attack": name,
                        "confidence": kappa,
                        "binary_search_steps": steps,
                        "max_iterations": iterations,
                        "images": len(x),
                        "seconds_plain": round(t_plain, 1),
                        "seconds_compacted": round(t_packed, 1),
                        "speedup": round(t_plain / t_packed, 2),
                        "same_success": bool(np.array_equal(plain.success, packed.success)),
                        "max_abs_difference": float(
                            np.max(
                                np.abs(
                                    np.asarray(plain.adversarial) - np.asarray(packed.adversarial)
                                )
                            )
                        ),
                    }
                    rows.append(row)
                    save()
                    print(
                        f"{name} kappa={kappa:g} {steps}x{iterations}: {t_plain:.0f} s -> "
                        f"{t_packed:.0f} s ({row['speedup']}x), same success "
                        f"{row['same_success']}, max diff {row['max_abs_difference']:.1e}",
                        flush=True,
                    )
    else:
        pre, x, y = setup(args.dataset, args.num_examples, args.data_dir)
        for name in args.attacks:
            for kappa in args.confidences:
                for steps, iterations in grid:
                    result, seconds = timed(
                        attacks[name],
                        pre.logits_fn,
                        x,
                        y,
                        confidence=kappa,
                        binary_search_steps=steps,
                        max_iterations=iterations,
                    )
                    ok = np.asarray(result.success)
                    row = {
                        "attack": name,
                        "confidence": kappa,
                        "binary_search_steps": steps,
                        "max_iterations": iterations,
                        "images": len(x),
                        "success": float(ok.mean()),
                        "seconds": round(seconds, 1),
                    }
                    for norm in ("l0", "l1", "l2", "linf"):
                        values = np.asarray(getattr(result, norm))[ok]
                        row[f"mean_{norm}"] = float(values.mean()) if ok.any() else None
                    rows.append(row)
                    save()
                    print(
                        f"{name} kappa={kappa:g} {steps}x{iterations}: success "
                        f"{row['success']:.1%}, L2 {row['mean_l2'] or float('nan'):.3f}, "
                        f"L1 {row['mean_l1'] or float('nan'):.2f}, {seconds:.0f} s",
                        flush=True,
                    )
    print(f"-> {out}")


if __name__ == "__main__":
    main()
