"""How far a sweep's cached adversarial examples reach past kappa: ``python -m eval.cache_margins``.

For every ``kappa_<K>.npz`` in the sweep cache, recomputes on this machine the logit
margin (best other logit minus true logit) of each cached example and reports the
quantiles of margin - kappa and the fraction at or above kappa. Useful when a cache was
crafted on another machine or at another precision (see results/mnist/preliminary).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from remix_jax.cli import DATA_DIR_HELP, HelpFormatter, add_dataset_flag, check_output_path


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    p.add_argument("--attack", default="cw", help="cache folder name (cw, ead, cw-targeted)")
    add_dataset_flag(p)
    p.add_argument("--cache-dir", default=None, help="default: results/<dataset>/cache/<attack>")
    p.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    p.add_argument("--out", default=None, help="JSON path (default: print only)")
    args = p.parse_args(argv)
    if args.out:
        check_output_path(args.out)

    from remix_jax import runtime

    runtime.configure()
    runtime.use_full_precision()
    import jax
    import numpy as np

    from remix_jax import adversarial_cache, data, provenance
    from remix_jax.attacks.common import margin
    from remix_jax.pretrained import load_pretrained

    folder = args.cache_dir or os.path.join("results", args.dataset, "cache", args.attack)
    paths = list(adversarial_cache.finished(folder).values())
    if not paths:
        sys.exit(f"error: no kappa_*.npz in {folder}")
    try:
        pre = load_pretrained(args.dataset)
        split = data.load_split(args.dataset, "test", args.data_dir)
    except (FileNotFoundError, ValueError, NotImplementedError) as e:
        sys.exit(f"error: {e}")
    logits = jax.jit(pre.logits_fn)
    rows = []
    for path in paths:
        arrays, settings = adversarial_cache.read(path)
        adversarial = arrays["adversarial"]
        kappa, targeted = settings["confidence"], settings.get("targeted", False)
        if targeted:
            sys.exit("error: targeted caches are not supported (the target labels are not stored)")
        y = split.labels[np.asarray(settings["indices"])]
        m = np.concatenate(
            [
                np.asarray(margin(logits(adversarial[i : i + 1000]), y[i : i + 1000], False))
                for i in range(0, len(y), 1000)
            ]
        )
        q = np.quantile(m - kappa, [0.0, 0.01, 0.5, 0.99, 1.0])
        rows.append(
            {
                "confidence": kappa,
                "images": len(y),
                "fraction_at_or_above_kappa": float(np.mean(m >= kappa)),
                "fraction_misclassified": float(np.mean(m > 0)),
                "margin_minus_kappa_quantiles": dict(
                    zip(["min", "p01", "median", "p99", "max"], map(float, q), strict=True)
                ),
            }
        )
        print(
            f"kappa={kappa:g}: {rows[-1]['fraction_at_or_above_kappa']:.1%} reach kappa, "
            f"{rows[-1]['fraction_misclassified']:.1%} misclassified, margin - kappa in "
            f"[{q[0]:+.4f}, {q[-1]:+.4f}], median {q[2]:+.4f}"
        )
    if args.out:
        result = {"cache": folder, "rows": rows, "data_source": split.source, **provenance.stamp()}
        with open(args.out + ".tmp", "w") as f:
            json.dump(result, f, indent=2)
        os.replace(args.out + ".tmp", args.out)
        print(f"-> {args.out}")


if __name__ == "__main__":
    main()
