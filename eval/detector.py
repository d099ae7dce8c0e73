"""Detecting adversarial examples with REMIX's inpainted copies, beside MagNet's detectors.

    python -m eval.detector --attack cw [--dataset mnist] [--preset cpu|paper] [--num-keys 5]

The detector the REMIX paper proposes in its conclusion (remix_jax.detector): scores
from the n inpainted copies of an input, for REMIX with and without its reformer.
It reads the adversarial examples eval.sweep cached (results/<dataset>/cache/<attack>/
for --preset paper, .../<attack>-<preset>/ otherwise; finished kappa_<k>.npz only)
and crafts none itself. Positives (--positives verified): the cached examples that
fool the bare classifier, success re-checked here in full float32 (margin >= kappa,
wrong argmax) as eval.sweep does, or (misclassified) every cached example the
classifier gets wrong here; negatives: the same clean test images the attack started
from. Thresholds (MagNet's rule) are set on clean validation images, the last
--validation-size training images (MagNet's validation split, never evaluated), at
each --drop-rates; the first rate is the headline (default: MagNet's rate for the
dataset, 0.001 on MNIST, 0.005 on CIFAR-10). Randomized
scores: mean and spread over --num-keys keys, each key with fresh masks for the
validation, clean and adversarial images. Writes results/<dataset>/detector-<attack>
[-<preset>][-misclassified].json, .md and .png (ROC AUC vs kappa).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from remix_jax import adversarial_cache, attack_registry, datasets
from remix_jax.cli import (
    CHECKPOINT_ROOT_HELP,
    DATA_DIR_HELP,
    HelpFormatter,
    add_dataset_flag,
    check_output_path,
)

VARIANTS = {"REMIX": "reformer + mask-inpaint", "REMIX MI": "mask-inpaint only"}
# plot: one colour per score, one line style per defense
COLORS = {
    "inpaint-L2": "tab:blue",
    "copies-JSD": "tab:orange",
    "copies-disagree": "tab:green",
    "output-JSD": "tab:red",
    "I-L2": "tab:purple",
    "II-L1": "tab:brown",
    "JSD-T10": "tab:pink",
    "JSD-T40": "tab:gray",
    "I-L1": "tab:olive",
}
POSITIVES = {
    "verified": "cached examples whose success (margin >= kappa, wrong argmax) holds when "
    "re-checked here in full float32, as eval.sweep scores them",
    "misclassified": "every cached example that the bare classifier misclassifies here "
    "(whatever its margin)",
}
STYLES = {"REMIX": "-", "REMIX MI": "--", "MagNet": ":"}


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    p.add_argument("--attack", choices=attack_registry.names("confidence"), required=True)
    add_dataset_flag(p)
    p.add_argument(
        "--preset",
        choices=sorted(attack_registry.PRESETS),
        default="cpu",
        help="which eval.sweep cache to read",
    )
    p.add_argument("--targeted", action="store_true", help="the targeted attack's cache")
    p.add_argument(
        "--positives",
        choices=sorted(POSITIVES),
        default="verified",
        help="which cached examples count as adversarial",
    )
    p.add_argument(
        "--confidences",
        type=float,
        nargs="+",
        default=None,
        help="kappas to score (default: every finished cache)",
    )
    p.add_argument("--num-keys", type=int, default=5, help="keys (mask draws) per REMIX score")
    p.add_argument(
        "--drop-rates",
        type=float,
        nargs="+",
        default=None,
        help="clean validation rejection rates; the first is the headline (default: "
        + "; ".join(
            f"{d} {' '.join(map(str, datasets.get(d).detector_drop_rates))}"
            for d in datasets.names()
        )
        + ")",
    )
    p.add_argument("--temperature", type=float, default=10.0, help="T of the JSD scores")
    p.add_argument(
        "--validation-size",
        type=int,
        default=5000,
        help="last N training images, the clean calibration set",
    )
    p.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    p.add_argument("--checkpoint-root", default=None, help=CHECKPOINT_ROOT_HELP)
    p.add_argument("--cache-dir", default=None, help="default: eval.sweep's for the preset")
    p.add_argument(
        "--out", default=None, help="default: results/<dataset>/detector-<attack>[-<preset>]"
    )
    p.add_argument(
        "--render-only", action="store_true", help="rewrite the .md and .png from <out>.json"
    )
    args = p.parse_args(argv)
    if args.drop_rates is None:
        args.drop_rates = list(datasets.get(args.dataset).detector_drop_rates)
    for name in ("num_keys", "validation_size", "batch_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if not all(0 < r < 1 for r in args.drop_rates):
        p.error("--drop-rates must lie in (0, 1)")
    if args.temperature <= 0:
        p.error("--temperature must be > 0")
    if args.validation_size * min(args.drop_rates) < 1:
        p.error("--validation-size times the smallest --drop-rates must be >= 1")
    return args


def attack_name(args) -> str:
    return args.attack + ("-targeted" if args.targeted else "")


def default_out(dataset: str, attack: str, preset: str, positives: str = "verified") -> str:
    """results/<dataset>/detector-<attack>[-<preset>][-misclassified]."""
    name = f"detector-{attack}" + ("" if preset == "paper" else f"-{preset}")
    return os.path.join(
        "results", dataset, name + ("" if positives == "verified" else "-" + positives)
    )


def spread(values) -> dict:
    """Mean, sample std, min, max and count of per-key values (as given, not in %)."""
    from remix_jax.evaluation import summarize

    return summarize(values, scale=1.0)


def evaluate(run: dict, names: list, unions: dict, drop_rates: list, kappas: list) -> dict:
    """AUC, thresholds, clean rejection and detection (%) of one key's scores.

    Args:
      run: "val" / "clean" / each kappa -> detector name -> (N,) scores (a kappa's
        dict is empty when nothing fooled the classifier).
      names: the detectors to evaluate.
      unions: label -> member detectors: a union fires when any member does (at the
        members' thresholds for the same drop rate); only those within ``names``.
      drop_rates: validation rejection rates that set the thresholds.
      kappas: the kappas in ``run``.

    Returns:
      "auc" {(name, kappa)}, "threshold" {(name, rate)}, "clean_rejected"
      {(name, rate)} and "detected" {(name, rate, kappa)}.
    """
    import numpy as np

    from remix_jax import detector, magnet

    out = {"auc": {}, "threshold": {}, "clean_rejected": {}, "detected": {}}
    fires = {}  # (name, rate) -> {where: (N,) bool}
    for n in names:
        for r in drop_rates:
            t = magnet.threshold(run["val"][n], r)
            out["threshold"][(n, r)] = t
            fires[(n, r)] = {w: run[w][n] >= t for w in run if n in run[w]}
    for label, members in unions.items():
        if set(members) <= set(names):
            for r in drop_rates:
                fires[(label, r)] = {
                    w: np.any([fires[(m, r)][w] for m in members], axis=0)
                    for w in fires[(members[0], r)]
                }
    for (n, r), f in fires.items():
        out["clean_rejected"][(n, r)] = float(f["clean"].mean() * 100)
        for kappa in kappas:
            if kappa in f:
                out["detected"][(n, r, kappa)] = float(f[kappa].mean() * 100)
    for n in names:
        for kappa in kappas:
            if n in run.get(kappa, {}):
                out["auc"][(n, kappa)] = detector.roc_auc(run["clean"][n], run[kappa][n])
    return out


def rate_key(rate: float) -> str:
    return f"{rate:g}"


def main(argv=None) -> None:
    args = parse(argv)
    if args.render_only:
        out = args.out or default_out(args.dataset, attack_name(args), args.preset, args.positives)
        if not os.path.isfile(out + ".json"):
            sys.exit(f"error: --render-only needs {out}.json")
        with open(out + ".json") as f:
            write_outputs(out, json.load(f))
        print(f"-> {out}.md / .png")
        return
    check_output_path(
        args.out or default_out(args.dataset, attack_name(args), args.preset, args.positives)
    )
    from remix_jax import runtime

    runtime.configure()
    runtime.use_full_precision()
    import jax
    import numpy as np
    from tqdm import tqdm

    from remix_jax import components, data, detector, evaluation, provenance, training
    from remix_jax import magnet as magnet_lib
    from remix_jax.attacks.common import is_success
    from remix_jax.pretrained import load_magnet, load_pretrained

    started = time.time()
    name = attack_name(args)
    folder = args.cache_dir or adversarial_cache.default_folder(args.dataset, name, args.preset)
    caches = adversarial_cache.finished(folder)
    if args.confidences is not None:
        caches = {k: v for k, v in caches.items() if k in set(args.confidences)}
    if not caches:
        found = sorted(adversarial_cache.finished(folder))
        sys.exit(
            f"error: no finished kappa_<k>.npz in {folder}"
            + (
                f" for --confidences {' '.join(f'{k:g}' for k in args.confidences)} "
                f"(finished: {' '.join(f'{k:g}' for k in found)})"
                if found
                else ""
            )
            + f" (run python -m eval.sweep --attack {args.attack} --preset {args.preset} "
            "--craft-only first)"
        )
    try:
        pre = load_pretrained(args.dataset, args.checkpoint_root)
        magnet = load_magnet(args.dataset, args.checkpoint_root)
        test = data.load_split(args.dataset, "test", args.data_dir)
        train = data.load_split(args.dataset, "train", args.data_dir)
        _, (val_images, _) = training.holdout(train.images, train.labels, args.validation_size)
    except (FileNotFoundError, ValueError, NotImplementedError) as e:
        sys.exit(f"error: {e}")

    crafted, indices, settings = {}, None, None
    for kappa, path in caches.items():
        arrays, stored = adversarial_cache.read(path)
        crafted[kappa] = {"adversarial": arrays["adversarial"], "success": arrays["success"]}
        if indices is None:
            indices = stored["indices"]
            settings = {k: v for k, v in stored.items() if k not in ("indices", "confidence")}
        if stored["indices"] != indices or len(crafted[kappa]["success"]) != len(indices):
            sys.exit(
                f"error: {path} was crafted from other test images than "
                f"{next(iter(caches.values()))}"
            )
    x_all = data.to_float(test.images)
    x_clean, y = x_all[indices], test.labels[indices]
    x_val = data.to_float(val_images)
    targeted = bool(settings.get("targeted", False))
    attack_labels = adversarial_cache.attack_labels(
        y, datasets.get(args.dataset).num_classes, targeted
    )
    verify = jax.jit(lambda a, t, k: is_success(pre.logits_fn(a), t, targeted, k))
    rows = []
    for kappa, c in crafted.items():
        here = np.concatenate(
            [
                np.asarray(
                    verify(c["adversarial"][i : i + 1000], attack_labels[i : i + 1000], kappa)
                )
                for i in range(0, len(y), 1000)
            ]
        )
        wrong = evaluation.predict(pre.logits_fn, c["adversarial"]) != y
        c["positive"] = c["success"] & here if args.positives == "verified" else wrong
        rows.append(
            {
                "confidence": kappa,
                "images": len(y),
                "success_where_crafted": float(c["success"].mean() * 100),
                "fooled": int(c["positive"].sum()),
                "verified": int((c["success"] & here).sum()),
                "misclassified": int(wrong.sum()),
            }
        )
    clean_right = float(np.mean(evaluation.predict(pre.logits_fn, x_clean) == y) * 100)

    # MagNet: deterministic, scored once
    magnet_fn = jax.jit(lambda x: magnet_lib.detector_scores(magnet, pre.logits_fn, x))

    def magnet_scores(x):
        if not len(x):
            return {}
        parts = [magnet_fn(x[i : i + args.batch_size]) for i in range(0, len(x), args.batch_size)]
        return {f"MagNet {k}": np.concatenate([np.asarray(p[k]) for p in parts]) for k in parts[0]}

    official = [f"MagNet {n}" for n in components.magnet_official_names(args.dataset)]
    variants = {"REMIX": pre.remix, "REMIX MI": pre.remix.without_reformer()}
    remix_names = [f"{v} {s}" for v in args.variants for s in detector.SCORES]
    unions = {f"{v} (any score)": [f"{v} {s}" for s in detector.SCORES] for v in args.variants}
    unions[f"MagNet ({' or '.join(n[7:] for n in official)})"] = official
    runs = []  # per key: detector -> {"val", "clean", kappa: adversarial} scores
    magnet_run = {"val": magnet_scores(x_val), "clean": magnet_scores(x_clean)}
    for kappa, c in crafted.items():
        magnet_run[kappa] = magnet_scores(c["adversarial"][c["positive"]])
    magnet_names = list(magnet_run["val"])
    stored_thresholds = {f"MagNet {k}": float(v) for k, v in magnet.thresholds.items()}

    total = args.num_keys * len(args.variants) * (2 + len(crafted))
    progress = tqdm(total=total, desc=f"REMIX detector scores ({name})", unit="set")
    for s in range(args.num_keys):
        run = {"val": {}, "clean": {}, **{kappa: {} for kappa in crafted}}
        key = jax.random.key(s)
        sets = {"val": (0, x_val), "clean": (1, x_clean)}
        sets.update(
            {
                kappa: (100 + round(kappa * 10), c["adversarial"][c["positive"]])
                for kappa, c in crafted.items()
            }
        )
        for v in args.variants:
            for where, (salt, x) in sets.items():
                if len(x):
                    scores = detector.batched_scores(
                        variants[v],
                        pre.logits_fn,
                        jax.random.fold_in(key, salt),
                        x,
                        temperature=args.temperature,
                        batch_size=args.batch_size,
                    )
                    run[where].update({f"{v} {k}": val for k, val in scores.items()})
                progress.update()
        runs.append(run)
    progress.close()

    kappas = list(crafted)
    evaluated = [evaluate(run, remix_names, unions, args.drop_rates, kappas) for run in runs]
    evaluated_magnet = [evaluate(magnet_run, magnet_names, unions, args.drop_rates, kappas)]

    def collect(field, key):
        source = evaluated_magnet if key[0].startswith("MagNet") else evaluated
        values = [e[field][key] for e in source if key in e[field]]
        return spread(values) if values else None

    detectors = remix_names + magnet_names
    labels = detectors + [u for u in unions if set(unions[u]) <= set(detectors)]
    rates = [rate_key(r) for r in args.drop_rates]
    thresholds = {
        n: {rate_key(r): collect("threshold", (n, r)) for r in args.drop_rates} for n in detectors
    }
    clean_rejected = {
        n: {rate_key(r): collect("clean_rejected", (n, r)) for r in args.drop_rates} for n in labels
    }
    for row in rows:
        kappa = row["confidence"]
        row["auc"] = {n: collect("auc", (n, kappa)) for n in detectors}
        row["detected"] = {
            n: {rate_key(r): collect("detected", (n, r, kappa)) for r in args.drop_rates}
            for n in labels
        }
    result = {
        "dataset": args.dataset,
        "attack": name,
        "preset": args.preset,
        "cache_dir": folder,
        "attack_settings": settings,
        "settings": {
            "num_keys": args.num_keys,
            "drop_rates": rates,
            "temperature": args.temperature,
            "variants": {v: VARIANTS[v] for v in args.variants},
            "n_masks": pre.remix.n_masks,
            "scores": list(detector.SCORES),
        },
        "positives": POSITIVES[args.positives],
        "negatives": f"the {len(y)} clean test images the attack started from "
        f"(classifier right on {clean_right:.1f}%)",
        "validation": {
            "images": len(x_val),
            "split": f"last {len(x_val)} training images (MagNet's validation)",
            "source": train.source,
        },
        "data_source": test.source,
        "num_examples": len(y),
        "detectors": detectors,
        "unions": {u: m for u, m in unions.items() if u in labels},
        "thresholds": thresholds,
        "magnet_thresholds_shipped": stored_thresholds,
        "clean_rejected": clean_rejected,
        "rows": rows,
        "wall_seconds": round(time.time() - started, 1),
        **provenance.stamp(),
    }
    out = args.out or default_out(args.dataset, name, args.preset, args.positives)
    print(markdown(result))
    provenance.write_unless_reproduced(out, result, write_outputs)


def _atomic_write(path: str, text: str) -> None:
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def write_outputs(out: str, result: dict) -> None:
    """JSON, Markdown tables and the AUC-vs-kappa plot, each written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    _atomic_write(out + ".json", json.dumps(result, indent=2) + "\n")
    _atomic_write(out + ".md", markdown(result))
    fig, ax = plt.subplots(figsize=(7.2, 3.6))
    for n in result["detectors"]:
        points = [(r["confidence"], r["auc"][n]) for r in result["rows"] if r["auc"][n]]
        if points:
            ax.errorbar(
                [k for k, _ in points],
                [a["mean"] for _, a in points],
                yerr=[a["std"] for _, a in points],
                marker="o",
                ms=3,
                capsize=2,
                label=n,
                linestyle=STYLES.get(n.rsplit(" ", 1)[0], "-."),
                color=COLORS.get(n.rsplit(" ", 1)[-1]),
            )
    ax.set_xlabel("confidence $\\kappa$")
    ax.set_ylabel("ROC AUC (clean vs adversarial)")
    ax.set_title(
        f"{result['dataset']}, {result['attack']} ({result['preset']}): detection", fontsize=10
    )
    lowest = min((a["mean"] for r in result["rows"] for a in r["auc"].values() if a), default=1)
    ax.set_ylim(min(0.45, lowest - 0.05), 1.02)
    ax.grid(alpha=0.3)
    ax.legend(
        fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False, handlelength=3
    )
    fig.tight_layout()
    fig.savefig(out + ".png.tmp.png", dpi=150)
    os.replace(out + ".png.tmp.png", out + ".png")
    plt.close(fig)


def _cell(v, digits: int) -> str:
    if v is None:
        return "-"
    return f"{v['mean']:.{digits}f}" + (f" ± {v['std']:.{digits}f}" if v["runs"] > 1 else "")


def markdown(result: dict) -> str:
    """The result as Markdown: AUC per kappa, then detection rates per drop rate."""
    s = result["settings"]
    rows = result["rows"]
    kappas = [f"{r['confidence']:g}" for r in rows]
    lines = [
        f"# {result['dataset']}, {result['attack']} ({result['preset']} preset): "
        "detecting adversarial examples",
        "",
        f"`{result['command']}` on {result['machine']} (commit {result['git_commit'][:10]}, "
        f"{result['date']}, {result['wall_seconds']:.0f} s); data: {result['data_source']}. "
        f"Negatives: {result['negatives']}. Positives: {result['positives']}. Thresholds "
        f"on {result['validation']['split']}. REMIX scores: mean ± std over "
        f"{s['num_keys']} keys (n = {s['n_masks']}, T = {s['temperature']:g}); "
        + "; ".join(f"{v} = {d}" for v, d in s["variants"].items())
        + "; MagNet: deterministic.",
        "",
        "ROC AUC (1 = separates, 0.5 = chance):",
        "",
        "| detector | " + " | ".join(f"κ={k}" for k in kappas) + " |",
        "|---" * (len(kappas) + 1) + "|",
        "| positives / images | " + " | ".join(f"{r['fooled']}/{r['images']}" for r in rows) + " |",
    ]
    # examples crafted elsewhere (e.g. at TF32) may pass the success test there and not here
    counts = {
        "success where crafted": [
            round(r["success_where_crafted"] * r["images"] / 100)
            if "success_where_crafted" in r
            else None
            for r in rows
        ],
        "success re-checked here": [r.get("verified") for r in rows],
        "misclassified here": [r.get("misclassified") for r in rows],
    }
    for label, values in counts.items():
        if any(v is not None and v != r["fooled"] for v, r in zip(values, rows, strict=True)):
            lines.append(f"| {label} | " + " | ".join(map(str, values)) + " |")
    lines += [
        f"| {n} | " + " | ".join(_cell(r["auc"][n], 3) for r in rows) + " |"
        for n in result["detectors"]
    ]
    for rate in s["drop_rates"]:
        labels = list(result["clean_rejected"])
        lines += [
            "",
            f"Detected (% of fooled examples) at drop rate {rate} (threshold from "
            "validation; column 'clean': % of the clean test images rejected):",
            "",
            "| detector | clean | " + " | ".join(f"κ={k}" for k in kappas) + " |",
            "|---" * (len(kappas) + 2) + "|",
        ]
        lines += [
            f"| {n} | {_cell(result['clean_rejected'][n][rate], 1)} | "
            + " | ".join(_cell(r["detected"][n][rate], 1) for r in rows)
            + " |"
            for n in labels
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
