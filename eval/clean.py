"""Clean test accuracy of the classifier behind each defense: ``python -m eval.clean``.

Rows: classifier alone; + reformer; REMIX mask-inpaint (K = 1, 2, 3), without and
with the reformer. Randomized rows: mean and spread over --num-keys keys. Writes
``results/<dataset>/clean.json`` and ``clean.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", choices=["mnist", "cifar10"], default="mnist")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--checkpoint-root", default=None, help="default: the repo's checkpoints/")
    p.add_argument("--inpainter", default=None,
                   help="use this inpainter checkpoint folder instead of the shipped one")
    p.add_argument("--num-keys", type=int, default=5, help="keys per randomized row")
    p.add_argument("--iterations", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--limit", type=int, default=None, help="first N test images only")
    p.add_argument("--out", default=None, help="default: results/<dataset>/clean")
    args = p.parse_args(argv)
    if args.num_keys < 1 or min(args.iterations) < 0:
        sys.exit("error: --num-keys must be >= 1 and --iterations >= 0")

    from remix_jax import runtime

    runtime.configure()
    import jax
    import numpy as np
    from tqdm import tqdm

    from remix_jax import data, evaluation, provenance
    from remix_jax.defense import autoencoder_fn
    from remix_jax.pretrained import load_pretrained, restore_autoencoder

    try:
        split = data.load_split(args.dataset, "test", args.data_dir)
        pre = load_pretrained(args.dataset, args.checkpoint_root)
        if args.inpainter:
            cfg, params, meta_cfg = restore_autoencoder(os.path.abspath(args.inpainter),
                                                        data.DATASETS[args.dataset][:2])
            pre = pre._replace(remix=pre.remix.replace(
                inpainter=params, inpainter_config=cfg, n_masks=meta_cfg["n_masks"]))
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"error: {e}")
    x = data.to_float(split.images[:args.limit])
    y = split.labels[:args.limit]
    started = time.time()

    def acc(pred):
        return float(np.mean(pred == y))

    rows = [{"defense": "none", "accuracy": acc(evaluation.predict(pre.logits_fn, x))}]
    reform = autoencoder_fn(pre.remix.reformer_config, pre.remix.reformer)
    reformed = np.concatenate([np.asarray(jax.jit(reform)(x[i:i + 1000]))
                               for i in range(0, len(x), 1000)])
    rows.append({"defense": "reformer", "accuracy": acc(evaluation.predict(pre.logits_fn,
                                                                           reformed))})
    variants = [(k, with_reformer) for with_reformer in (False, True) for k in args.iterations]
    for k, with_reformer in tqdm(variants, desc="REMIX rows"):
        params = pre.remix if with_reformer else pre.remix.without_reformer()
        accs = [acc(evaluation.remix_predict(pre.logits_fn, params, jax.random.key(s), x,
                                             iterations=k)) for s in range(args.num_keys)]
        name = f"{'reformer + ' if with_reformer else ''}mask-inpaint n={params.n_masks} K={k}"
        rows.append({"defense": name, **evaluation.summarize(accs)})
    rows[0]["accuracy"] *= 100
    rows[1]["accuracy"] *= 100
    inpainter_dir = os.path.abspath(args.inpainter) if args.inpainter else None
    result = {
        "dataset": args.dataset,
        "images": len(x),
        "rows": rows,
        "inpainter_checkpoint": inpainter_dir,
        "inpainter_config": pre.remix.inpainter_config.__dict__,
        "data_source": split.source,
        "wall_seconds": round(time.time() - started, 1),
        **provenance.stamp(),
    }
    out = args.out or os.path.join("results", args.dataset, "clean")
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    table = markdown(result)
    for path, text in ((f"{out}.json", json.dumps(result, indent=2) + "\n"), (f"{out}.md", table)):
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.replace(path + ".tmp", path)
    print(table)


def markdown(result: dict) -> str:
    lines = [f"Clean test accuracy, {result['dataset']}, {result['images']} test images "
             f"(`{result['command']}`; {result['machine']})", "",
             "| defense | accuracy (%) | spread over keys |", "|---|---|---|"]
    for row in result["rows"]:
        if "mean" in row:
            lines.append(f"| {row['defense']} | {row['mean']:.2f} | ± {row['std']:.2f} (min "
                         f"{row['min']:.2f}, max {row['max']:.2f}, {row['runs']} keys) |")
        else:
            lines.append(f"| {row['defense']} | {row['accuracy']:.2f} | deterministic |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
