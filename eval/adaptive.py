"""Robust accuracy of REMIX under adaptive white-box attacks, beside the oblivious setting.

    python -m eval.adaptive --attack pgd --norm linf [--dataset mnist] [--sanity]

Every attack sees the whole pipeline classifier(defend(key, x)), with one of these
threat models (--threats):
  oblivious  crafted on the bare classifier (the paper's setting), scored behind REMIX;
  eot        exact gradients through the reformer and inpainter, logits averaged
             over --samples fresh mask draws per step (EOT);
  bpda       the same with an identity backward pass for the reformer and each
             mask-inpaint round (BPDA);
  eot-warm   PGD only: eot started from the oblivious example of the same budget
             instead of a random point (the adaptive attack begins where the
             transfer attack ended; its crafting time excludes the transfer attack's);
  fixed      one fixed mask draw (the attacker's key) at every step: scored with the
             attacker's own key (a sanity check: the attack must then succeed) and
             with fresh keys.
Robust accuracy is measured with --num-keys keys the attacker never saw (mean and
spread). --detector adds the paper's proposed detector (remix_jax.detector): every
row then also reports how many examples it rejects (threshold at
--detector-drop-rate of clean validation images) and the accuracy counting a
rejection as defended, and runs "eot" attacks that also pay --detector-weights times
max(score / threshold - 1/2, 0) to evade it (a hinge: no cost while the score stays
well below the threshold, so the attack is free to fool the classifier until the
detector is near). --sanity adds the checks
of Carlini et al. (2019) at --sanity-budget: more EOT samples and more steps must not
weaken the attack, and a large budget must bring accuracy to ~0. Adversarial images
are cached per run under results/<dataset>/cache/adaptive/, so a killed evaluation
resumes. Writes
results/<dataset>/adaptive-<attack>[-<norm>].{json,md,png}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time

from remix_jax import attack_registry, datasets
from remix_jax.cli import (
    CHECKPOINT_ROOT_HELP,
    DATA_DIR_HELP,
    HelpFormatter,
    add_dataset_flag,
    check_output_path,
)

DEFENSES = ("mask-inpaint", "reformer + mask-inpaint")
THREATS = ("oblivious", "eot", "bpda", "fixed", "eot-warm")
# remix_jax.detector.SCORES (not imported here: JAX must start after runtime.configure)
DETECTOR_SCORES = ("inpaint-L2", "copies-JSD", "copies-disagree", "output-JSD")
# robust accuracy is scored with keys 10_000 + s, as in eval.sweep; attackers fold
# their run's hash into --seed, so no attacker key is ever an evaluation key
EVAL_KEY_BASE = 10_000
CALIBRATION_KEY = 20_000  # the detector's masks on the validation images
# detector-aware attacks pay weight * max(score / threshold - HINGE, 0); PENALTY names
# the formula in each run's cache settings, so a new formula never reuses old images
HINGE = 0.5
PENALTY = "hinge(score/threshold - 0.5)"
# the detector's calibration of every detector-aware run cached before it joined the
# runs' identity (see run_settings)
LEGACY_THRESHOLD_FROM = {"detector_drop_rate": 0.001, "validation_size": 5000}


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    add_dataset_flag(p)
    p.add_argument("--attack", choices=attack_registry.names(), required=True)
    p.add_argument("--norm", choices=["linf", "l2"], default="linf", help="PGD's ball")
    p.add_argument(
        "--budgets",
        type=float,
        nargs="+",
        default=None,
        help="PGD: epsilons (default MNIST linf 0.05 0.1 0.2 0.3, l2 1 2 3; "
        "CIFAR-10 linf 2/255 4/255 8/255, l2 0.25 0.5 1); "
        "CW/EAD: confidences kappa (default 0)",
    )
    p.add_argument("--defenses", nargs="+", choices=DEFENSES, default=["reformer + mask-inpaint"])
    p.add_argument("--threats", nargs="+", choices=THREATS, default=["oblivious", "eot"])
    p.add_argument(
        "--num-examples",
        type=int,
        default=100,
        help="first N test images the bare classifier gets right",
    )
    p.add_argument("--samples", type=int, default=4, help="EOT: mask draws per step (R)")
    p.add_argument("--steps", type=int, default=100, help="PGD steps")
    # margin, not cross-entropy: the MNIST classifier's logits (gaps of 20+) saturate the
    # float32 softmax, so CE's gradient is exactly 0 on confidently classified images
    # (PGD-L2, eps 2, bare classifier, 100 images: 35% accuracy left with CE, 14% with
    # the margin: results/mnist/adaptive-pgd-l2{-ce,}.md)
    p.add_argument("--loss", choices=["ce", "margin"], default="margin", help="PGD's loss")
    p.add_argument("--binary-search-steps", type=int, default=5, help="CW/EAD")
    p.add_argument("--max-iterations", type=int, default=200, help="CW/EAD")
    p.add_argument("--initial-const", type=float, default=1.0, help="CW/EAD first c")
    p.add_argument("--beta", type=float, default=0.1, help="EAD's L1 weight")
    p.add_argument("--iterations", type=int, default=1, help="REMIX mask-inpaint rounds K")
    p.add_argument("--num-keys", type=int, default=10, help="evaluation keys per defense")
    p.add_argument("--seed", type=int, default=0, help="attacker randomness")
    p.add_argument("--sanity", action="store_true", help="add the sanity-check runs")
    p.add_argument(
        "--sanity-budget",
        type=float,
        default=None,
        help="budget of the samples/steps checks (default: the second budget)",
    )
    p.add_argument(
        "--large-budget",
        type=float,
        default=None,
        help="the large-budget check (default linf 0.5, l2 8, kappa: none)",
    )
    p.add_argument(
        "--detector",
        choices=DETECTOR_SCORES,
        default=None,
        help="score and attack REMIX's detector with this score",
    )
    p.add_argument(
        "--detector-weights",
        type=float,
        nargs="+",
        default=[1.0, 10.0, 100.0],
        help="weight of max(score / threshold - 1/2, 0) in detector-aware runs",
    )
    p.add_argument(
        "--detector-drop-rate",
        type=float,
        default=None,
        help="share of clean validation images the detector rejects (default: "
        "MagNet's headline rate for the dataset, as eval.detector: "
        + "; ".join(f"{d} {datasets.get(d).detector_drop_rates[0]:g}" for d in datasets.names())
        + ")",
    )
    p.add_argument(
        "--validation-size",
        type=int,
        default=5000,
        help="last N training images: the detector's clean calibration set",
    )
    p.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    p.add_argument("--checkpoint-root", default=None, help=CHECKPOINT_ROOT_HELP)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.detector_drop_rate is None:
        args.detector_drop_rate = datasets.get(args.dataset).detector_drop_rates[0]
    for name in (
        "num_examples",
        "samples",
        "steps",
        "num_keys",
        "binary_search_steps",
        "max_iterations",
    ):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if not 0 < args.detector_drop_rate < 1 or min(args.detector_weights) <= 0:
        p.error("--detector-drop-rate must be in (0, 1) and --detector-weights > 0")
    if args.iterations < 1:
        p.error("--iterations must be >= 1 (K = 0 has no masks to attack)")
    if "eot-warm" in args.threats and args.attack != "pgd":
        p.error("--threats eot-warm needs --attack pgd (CW/EAD search from x itself)")
    if args.budgets is None:
        budgets = datasets.get(args.dataset).pgd_budgets[args.norm]
        args.budgets = list(budgets) if args.attack == "pgd" else [0.0]
    if not all(0 <= b < float("inf") for b in args.budgets) or (
        args.attack == "pgd" and min(args.budgets) == 0
    ):
        p.error("--budgets must be finite and > 0 (PGD) or >= 0 (kappa)")
    if args.attack == "pgd" and args.norm == "linf" and max(args.budgets) >= 1:
        p.error("an L-inf budget >= 1 allows any image in [0, 1]: --budgets must be < 1")
    if args.validation_size < 1:
        p.error("--validation-size must be >= 1")
    return args


def plan(args) -> list[dict]:
    """The runs: (group, defense, threat, budget, samples, steps) in evaluation order."""
    pgd = args.attack == "pgd"

    def run(group, defense, threat, budget, samples=args.samples, steps=args.steps, weight=None):
        if threat in ("oblivious", "fixed"):
            samples = 1
        extra = (
            {}
            if weight is None
            else {"detector": args.detector, "detector_weight": weight, "detector_penalty": PENALTY}
        )
        return {
            "group": group,
            "defense": defense if threat != "oblivious" else "none",
            "threat": threat,
            "budget": budget,
            "samples": samples,
            "steps": steps if pgd else None,
            **extra,
        }

    runs = []
    for budget in args.budgets:
        for threat in args.threats:
            for defense in [None] if threat == "oblivious" else args.defenses:
                runs.append(run("curve", defense, threat, budget))
    if args.detector and pgd:
        for budget in args.budgets:
            for weight in args.detector_weights:
                for defense in args.defenses:
                    runs.append(run("detector-aware", defense, "eot", budget, weight=weight))
    if args.sanity:
        budget = args.sanity_budget or args.budgets[min(1, len(args.budgets) - 1)]
        main = args.defenses[-1]
        for r in sorted({1, args.samples, 2 * args.samples}):
            runs.append(run("samples", main, "eot", budget, samples=r))
        if pgd:
            for s in sorted({args.steps // 4, args.steps // 2, args.steps, 2 * args.steps} - {0}):
                runs.append(run("steps", main, "eot", budget, steps=s))
        runs.append(run("fixed masks", main, "fixed", budget))
        large = args.large_budget or ({"linf": 0.5, "l2": 8.0}[args.norm] if pgd else None)
        if large:
            runs.append(run("large budget", main, "eot", large))
    unique = []
    for r in runs:  # a sanity run may repeat a curve run: craft and report it once
        if all({**r, "group": None} != {**u, "group": None} for u in unique):
            unique.append(r)
    return unique


def run_settings(args, indices: list, attack_settings: dict, run: dict) -> dict:
    """What a crafted run depends on: its cache identity (and, hashed, its attacker key).

    A detector-aware run also depends on the detector's threshold, i.e. on the drop rate
    and the calibration set. Those join the identity only when they differ from the
    values every run used before they were part of it (0.001, 5000 images), so that
    the committed caches keep their names and their attacker keys.
    """
    settings = {
        "dataset": args.dataset,
        "attack": args.attack,
        "indices": indices,
        "iterations": args.iterations,
        "seed": args.seed,
        **attack_settings,
        **{k: v for k, v in run.items() if k != "group"},
    }
    threshold_from = {
        "detector_drop_rate": args.detector_drop_rate,
        "validation_size": args.validation_size,
    }
    if "detector_weight" in run and threshold_from != LEGACY_THRESHOLD_FROM:
        settings.update(threshold_from)
    return settings


def default_out(args) -> str:
    """``--out``, else results/<dataset>/adaptive-<attack>[-<norm>]."""
    return args.out or os.path.join(
        "results",
        args.dataset,
        f"adaptive-{args.attack}" + (f"-{args.norm}" if args.attack == "pgd" else ""),
    )


def main(argv=None) -> None:
    args = parse(argv)
    check_output_path(default_out(args))
    from remix_jax import runtime

    runtime.configure()
    runtime.use_full_precision()
    import jax
    import numpy as np
    from tqdm import tqdm

    from remix_jax import data, defend, evaluation, provenance
    from remix_jax import detector as detector_lib
    from remix_jax.attacks import adaptive, pgd
    from remix_jax.pretrained import load_pretrained

    try:
        pre = load_pretrained(args.dataset, args.checkpoint_root)
        split = data.load_split(args.dataset, "test", args.data_dir)
    except (FileNotFoundError, ValueError, NotImplementedError) as e:
        sys.exit(f"error: {e}")
    started = time.time()
    x_all = data.to_float(split.images)
    correct = np.flatnonzero(evaluation.predict(pre.logits_fn, x_all) == split.labels)
    chosen = correct[: args.num_examples]
    x, y = x_all[chosen], split.labels[chosen]
    remix = {"reformer + mask-inpaint": pre.remix, "mask-inpaint": pre.remix.without_reformer()}
    remix = {d: p.replace(iterations=args.iterations) for d, p in remix.items()}
    cache_dir = args.cache_dir or os.path.join("results", args.dataset, "cache", "adaptive")
    os.makedirs(cache_dir, exist_ok=True)

    attack_settings = (
        {"norm": args.norm, "loss": args.loss}
        if args.attack == "pgd"
        else {
            "binary_search_steps": args.binary_search_steps,
            "max_iterations": args.max_iterations,
            "initial_const": args.initial_const,
            **attack_registry.get(args.attack).own_settings(args),
        }
    )
    models = {}  # one logits function per (defense, threat, samples): compiled once

    def model(r):
        bpda = ("reformer", "mask-inpaint") if r["threat"] == "bpda" else ()
        name = (r["defense"], bpda, r["samples"])
        if name not in models:
            models[name] = adaptive.defended_logits(
                pre.logits_fn, remix[r["defense"]], samples=r["samples"], bpda=bpda, chunk=None
            )
        return models[name]

    def identity(r):
        """The run's settings, cache path and attacker key (derived from the settings)."""
        settings = run_settings(args, chosen.tolist(), attack_settings, r)
        digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
        key = jax.random.fold_in(jax.random.key(args.seed), int(digest[:7], 16))
        return settings, os.path.join(cache_dir, f"{args.attack}-{digest}.npz"), key

    def craft(r):
        settings, path, key = identity(r)
        if os.path.isfile(path):
            with np.load(path) as f:
                if json.loads(str(f["settings"])) == settings:
                    return {k: f[k] for k in ("adversarial", "success", "seconds")}
        start = {}
        if r["threat"] == "eot-warm":  # crafted (or loaded) first: not timed with this run
            transfer = {
                "group": None,
                "defense": "none",
                "threat": "oblivious",
                "budget": r["budget"],
                "samples": 1,
                "steps": r["steps"],
            }
            start = {"start": craft(transfer)["adversarial"]}
        began = time.time()
        if r["threat"] == "oblivious":
            fn, kwargs = pre.logits_fn, {}
        else:
            fn = model(r)
            if r["threat"] == "fixed":
                fn = adaptive.fixed_masks(fn, key)
            kwargs = {"stochastic": True} if args.attack == "pgd" else {"key": key}
        if args.attack == "pgd":
            if r.get("detector_weight"):
                kwargs["penalty"] = penalty(r["defense"], r["detector_weight"])
            res = pgd(
                fn,
                x,
                y,
                key=key,
                epsilon=r["budget"],
                steps=r["steps"],
                norm=args.norm,
                loss=args.loss,
                **start,
                **kwargs,
            )
        else:
            attack = attack_registry.get(args.attack).resolve()
            res = attack(fn, x, y, confidence=r["budget"], **attack_settings, **kwargs)
        out = {
            "adversarial": np.asarray(res.adversarial),
            "success": np.asarray(res.success),
            "seconds": np.float64(time.time() - began),
        }
        tmp = path + ".tmp.npz"
        np.savez_compressed(tmp, settings=json.dumps(settings), **out)
        os.replace(tmp, path)
        return out

    thresholds = {}  # defense -> the detector's threshold, set on clean validation images

    def threshold(defense):
        if defense not in thresholds:
            train = data.load_split(args.dataset, "train", args.data_dir)
            x_val = data.to_float(train.images[-args.validation_size :])
            thresholds[defense] = detector_lib.calibrate(
                remix[defense],
                pre.logits_fn,
                jax.random.key(CALIBRATION_KEY),
                x_val,
                {args.detector: args.detector_drop_rate},
            )[args.detector]
        return thresholds[defense]

    def penalty(defense, weight):
        """``weight * max(score / threshold - HINGE, 0)``: (B,)."""
        scale = 1.0 / threshold(defense)

        def fn(z, key):
            scores = detector_lib.detector_scores(remix[defense], pre.logits_fn, key, z)
            return weight * jax.numpy.maximum(scale * scores[args.detector] - HINGE, 0.0)

        return fn

    def right(defense, adv, keys):
        """Per key: (N,) bool, the classifier is right behind the defense."""
        if defense == "none":
            return [evaluation.predict(pre.logits_fn, adv) == y]
        return [evaluation.remix_predict(pre.logits_fn, remix[defense], k, adv) == y for k in keys]

    def rejected(defense, adv, keys):
        """Per key: (N,) bool, the detector rejects the input."""
        return [
            detector_lib.batched_scores(remix[defense], pre.logits_fn, k, adv)[args.detector]
            >= threshold(defense)
            for k in keys
        ]

    def accuracy(defense, adv, keys):
        return evaluation.summarize([np.mean(r) for r in right(defense, adv, keys)])

    def detection(defense, adv, keys, adversarial=True):
        """Rejected (%) and accuracy with the detector: rejected or right if adversarial,
        passed and right if clean."""
        caught, ok = rejected(defense, adv, keys), right(defense, adv, keys)
        handled = [(c | o) if adversarial else (~c & o) for c, o in zip(caught, ok, strict=True)]
        return {
            "rejected": evaluation.summarize([np.mean(c) for c in caught]),
            "accuracy": evaluation.summarize([np.mean(h) for h in handled]),
        }

    eval_keys = [jax.random.key(EVAL_KEY_BASE + s) for s in range(args.num_keys)]
    rows = []
    survived = {}  # (budget, defense) -> per attack, per key: (N,) bool right
    for r in tqdm(plan(args), desc=f"adaptive {args.attack}"):
        c = craft(r)
        delta = (c["adversarial"] - x).reshape(len(x), -1)
        scored = ["none", *args.defenses] if r["threat"] == "oblivious" else ["none", r["defense"]]
        hits = {d: right(d, c["adversarial"], eval_keys) for d in scored}
        for d in scored[1:]:
            survived.setdefault((r["budget"], d), []).append(hits[d])
        row = {
            **r,
            "attacker_success": float(c["success"].mean() * 100),
            "mean_l2": float(np.sqrt((delta**2).sum(1)).mean()),
            "mean_linf": float(np.abs(delta).max(1).mean()),
            "craft_seconds": round(float(c["seconds"]), 1),
            "accuracy": {d: evaluation.summarize([np.mean(h) for h in hits[d]]) for d in scored},
        }
        if args.detector:
            row["with_detector"] = {
                d: detection(d, c["adversarial"], eval_keys) for d in row["accuracy"] if d != "none"
            }
        if r["threat"] == "fixed":  # the attacker's own draw: the check that it works
            own = defend(remix[r["defense"]], identity(r)[2], c["adversarial"])
            row["accuracy_attacker_key"] = float(
                np.mean(evaluation.predict(pre.logits_fn, np.asarray(own)) == y) * 100
            )
        rows.append(row)
        tqdm.write(
            f"{r['group']} {r['defense']} {r['threat']} budget {r['budget']:g} "
            f"R={r['samples']} steps={r['steps']}: accuracy "
            + ", ".join(f"{d} {a['mean']:.1f}" for d, a in row["accuracy"].items())
        )
    clean = {d: accuracy(d, x, eval_keys) for d in ["none", *args.defenses]}
    # an image survives a budget under a key only if it survives every attack run there
    worst = [
        {
            "budget": b,
            "defense": d,
            "attacks": len(runs),
            "accuracy": evaluation.summarize(
                [
                    np.mean(np.logical_and.reduce([run[k] for run in runs]))
                    for k in range(len(eval_keys))
                ]
            ),
        }
        for (b, d), runs in sorted(survived.items())
    ]
    detector_info = None
    if args.detector:
        detector_info = {
            "score": args.detector,
            "drop_rate": args.detector_drop_rate,
            "validation": f"last {args.validation_size} training images",
            "thresholds": {d: threshold(d) for d in args.defenses},
            "clean": {d: detection(d, x, eval_keys, adversarial=False) for d in args.defenses},
        }
    result = {
        "dataset": args.dataset,
        "attack": args.attack,
        "settings": {
            **attack_settings,
            "samples": args.samples,
            "steps": args.steps if args.attack == "pgd" else None,
            "iterations": args.iterations,
            "n_masks": pre.remix.n_masks,
            "seed": args.seed,
        },
        "num_examples": len(y),
        "num_keys": args.num_keys,
        "clean": clean,
        "rows": rows,
        "worst_case": worst,
        "detector": detector_info,
        "data_source": split.source,
        "wall_seconds": round(time.time() - started, 1),
        **provenance.stamp(),
    }
    out = default_out(args)
    print(markdown(result))
    provenance.write_unless_reproduced(out, result, write_outputs)


def label(defense: str, threat: str) -> str:
    if defense == "none":
        return "no defense" if threat == "oblivious" else "no defense (on these examples)"
    return {
        "oblivious": f"{defense}: oblivious (crafted on the bare classifier)",
        "eot": f"{defense}: adaptive, EOT + exact gradients",
        "bpda": f"{defense}: adaptive, EOT + BPDA",
        "eot-warm": f"{defense}: adaptive, EOT from the oblivious example",
        "fixed": f"{defense}: one fixed mask draw, fresh keys",
    }[threat]


def curves(result: dict) -> dict[str, list[tuple[float, dict]]]:
    """Accuracy vs budget per line label, from the "curve" rows (clean at budget 0)."""
    lines: dict[str, list] = {}
    for row in result["rows"]:
        if row["group"] != "curve":
            continue
        for defense, acc in row["accuracy"].items():
            if defense == "none" and row["threat"] != "oblivious":
                continue
            lines.setdefault(label(defense, row["threat"]), []).append((row["budget"], acc))
    for w in result.get("worst_case", []):
        if len([v for v in result["worst_case"] if v["defense"] == w["defense"]]) > 1:
            lines.setdefault(f"{w['defense']}: worst case over every attack", []).append(
                (w["budget"], w["accuracy"])
            )
    if result["attack"] == "pgd":
        for name, points in lines.items():
            defense = "none" if name == "no defense" else name.split(":")[0]
            points.insert(0, (0.0, result["clean"][defense]))
    return lines


def markdown(result: dict) -> str:
    """The result as a Markdown table (accuracy: mean +- std over evaluation keys)."""
    budget = {"pgd": f"epsilon ({result['settings'].get('norm', '')})"}.get(
        result["attack"], "kappa"
    )
    settings = ", ".join(f"{k} {v}" for k, v in result["settings"].items() if v is not None)
    lines = [
        f"# {result['dataset']}: REMIX under adaptive {result['attack'].upper()}",
        "",
        f"`{result['command']}` on {result['machine']} (commit "
        f"{result['git_commit'][:10]}, {result['date']}, {result['wall_seconds']:.0f} s); "
        f"data: {result['data_source']}; {result['num_examples']} images; {settings}; "
        f"robust accuracy over {result['num_keys']} evaluation keys the attacker never "
        "saw (mean +- std).",
        "",
        "Clean accuracy on these images: "
        + ", ".join(f"{d} {a['mean']:.1f}" for d, a in result["clean"].items())
        + ".",
        "",
    ]
    detector = result.get("detector")
    extra = []
    if detector:
        lines += [
            f"Detector: REMIX {detector['score']}, threshold at drop rate "
            f"{detector['drop_rate']} of the {detector['validation']}; on these clean "
            "images it rejects "
            + ", ".join(f"{d} {v['rejected']['mean']:.1f}%" for d, v in detector["clean"].items())
            + " (accuracy with it: "
            + ", ".join(f"{d} {v['accuracy']['mean']:.1f}" for d, v in detector["clean"].items())
            + "). Detector-aware runs pay weight x max(score / threshold - 1/2, 0).",
            "",
        ]
        extra = ["weight", "rejected by the detector", "accuracy with the detector"]
    header = [
        "check",
        "defense attacked",
        "threat",
        budget,
        "R",
        "steps",
        *extra[:1],
        "attacker success",
        "mean L2",
        "mean Linf",
        "accuracy, no defense",
        "accuracy behind REMIX",
        *extra[1:],
    ]
    lines += ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for row in result["rows"]:
        behind = "; ".join(
            f"{d}: {a['mean']:.1f} +- {a['std']:.1f}"
            for d, a in row["accuracy"].items()
            if d != "none"
        )
        if "accuracy_attacker_key" in row:
            behind += f" (attacker's own draw: {row['accuracy_attacker_key']:.1f})"
        weight = [f"{row['detector_weight']:g}" if "detector_weight" in row else "-"]
        detected = []
        if detector:
            detected = [
                "; ".join(
                    f"{d}: {v[k]['mean']:.1f} +- {v[k]['std']:.1f}"
                    for d, v in row["with_detector"].items()
                )
                for k in ("rejected", "accuracy")
            ]
        lines.append(
            "| "
            + " | ".join(
                [
                    row["group"],
                    row["defense"],
                    row["threat"],
                    f"{row['budget']:g}",
                    str(row["samples"]),
                    "-" if row["steps"] is None else str(row["steps"]),
                    *(weight if detector else []),
                    f"{row['attacker_success']:.1f}",
                    f"{row['mean_l2']:.3f}",
                    f"{row['mean_linf']:.3f}",
                    f"{row['accuracy']['none']['mean']:.1f}",
                    behind,
                    *detected,
                ]
            )
            + " |"
        )
    if result.get("worst_case"):
        lines += [
            "",
            "Worst case over every attack run at a budget (an image counts as "
            "defended under an evaluation key only if it survives all of them):",
            "",
            f"| {budget} | defense | attacks | accuracy |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {w['budget']:g} | {w['defense']} | {w['attacks']} | "
            f"{w['accuracy']['mean']:.1f} +- {w['accuracy']['std']:.1f} |"
            for w in result["worst_case"]
        ]
    return "\n".join(lines) + "\n"


def write_outputs(out: str, result: dict) -> None:
    """<out>.json, <out>.md and <out>.png (accuracy vs budget), each written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    for suffix, text in ((".json", json.dumps(result, indent=2) + "\n"), (".md", markdown(result))):
        with open(out + suffix + ".tmp", "w") as f:
            f.write(text)
        os.replace(out + suffix + ".tmp", out + suffix)
    fig, ax = plt.subplots(figsize=(9.6, 3.8))
    for name, points in curves(result).items():
        points = sorted(points, key=lambda p: p[0])
        ax.errorbar(
            [p[0] for p in points],
            [p[1]["mean"] for p in points],
            yerr=[p[1]["std"] for p in points],
            marker="o",
            ms=3,
            capsize=2,
            label=name,
            linestyle="--" if "oblivious" in name else "-",
            **({"color": "black", "linewidth": 2} if "worst case" in name else {}),
        )
    norm = result["settings"].get("norm", "")
    ax.set_xlabel(
        {"linf": "$L_\\infty$ budget $\\epsilon$", "l2": "$L_2$ budget $\\epsilon$"}.get(
            norm, "confidence $\\kappa$"
        )
    )
    ax.set_ylabel("accuracy (%)")
    ax.set_title(
        f"{result['dataset']}: {result['attack'].upper()} {norm}, {result['num_examples']} images",
        fontsize=10,
    )
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    fig.tight_layout()
    fig.savefig(out + ".png.tmp.png", dpi=150)
    os.replace(out + ".png.tmp.png", out + ".png")
    plt.close(fig)


if __name__ == "__main__":
    main()
