"""Our APGD-CE / APGD-DLR against reference implementations at equal settings.

``python -m bench.apgd_reference``, run with an interpreter that also has the
references, kept out of the project's venv (the README's reference venv)::

    python3 -m venv ../refvenv && ../refvenv/bin/pip install torch==2.13.0 \\
        && ../refvenv/bin/pip install -e . \\
        && ../refvenv/bin/pip install --no-deps torchattacks==3.5.1 \\
           adversarial-robustness-toolbox==1.20.1 \\
        && ../refvenv/bin/pip install scipy scikit-learn tqdm six setuptools

In one process, on the first --num-examples test images of --dataset (all of them,
right or wrong), L-inf at --epsilon, --steps steps, one restart, rho 0.75, no EOT, the
whole batch at once, fixed seeds (bench.apgd_runs):

  ours-ce / ours-dlr                  remix_jax.attacks.apgd
  torchattacks-ce / torchattacks-dlr  torchattacks.APGD
  art-ce / art-dlr                    ART's AutoProjectedGradientDescent
                                      (eps_step = 2 * eps, its default is 0.1)
  official-ce / official-dlr          fra31/auto-attack's APGDAttack, only with
                                      --official-path (a checkout of that repository)

The references attack the torch port of the same weights, checked to give the same
logits within 1e-4 first (bench.torch_ports.checked_port). Every returned image is
judged alike (remix_jax.attack_quality.judge_in_ball): projected into the ball and
[0, 1] (and counted if it lay outside), then classified by our JAX classifier; an
image is robust if that still gives its label. Each implementation's own verdict (the
torch port's for the references) is reported beside it.

Time: each run is preceded by a warm-up, the same call with --warmup-steps steps
(ours compiles there; reported separately); the timed call is the next one. The runs
alternate (ours, then each reference, per loss) so that load from other processes
falls on all of them alike. Writes <out>.json and <out>.md atomically after every run;
``--render-only`` rewrites them from <out>.json's rows and per-image verdicts.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from bench.apgd_runs import IMPLEMENTATIONS
from remix_jax import cli, datasets
from remix_jax.cli import DATA_DIR_HELP, HelpFormatter, add_dataset_flag

# the default budgets: where the bare classifier keeps 20-80% (issue 32)
EPSILON = {"mnist": 0.1, "cifar10": 1 / 255}
TOLERANCE = 1.0  # points of robust accuracy ours may lie above a reference's


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    add_dataset_flag(p)
    p.add_argument(
        "--num-examples", type=cli.positive_int, default=1000, help="first test images attacked"
    )
    p.add_argument(
        "--epsilon",
        type=cli.fraction,
        default=None,
        help="L-inf budget (default: 0.1 for MNIST, 1/255 for CIFAR-10)",
    )
    p.add_argument(
        "--steps", type=cli.attack_iterations, default=100, help="APGD steps (one restart)"
    )
    p.add_argument(
        "--warmup-steps",
        type=cli.attack_iterations,
        default=10,
        help="steps of the untimed-for-the-result warm-up call before each timed run",
    )
    p.add_argument("--seed", type=cli.seed, default=0, help="every implementation's seed")
    p.add_argument(
        "--implementations",
        nargs="+",
        choices=IMPLEMENTATIONS,
        default=None,
        help="default: ours and every reference installed (official-*: with --official-path)",
    )
    p.add_argument(
        "--official-path",
        default=None,
        help="a checkout of fra31/auto-attack (the folder holding autoattack/): runs its "
        "APGDAttack too",
    )
    p.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    p.add_argument(
        "--out",
        default=None,
        help="output path without extension (.json and .md; default "
        "results/bench/apgd_reference, _cifar10 appended for CIFAR-10)",
    )
    p.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite <out>.json's comparisons and <out>.md from its rows, attacking nothing",
    )
    return p


def main(argv=None) -> None:
    p = _parser()
    args = p.parse_args(argv)
    if args.out is None:
        args.out = "results/bench/apgd_reference" + datasets.file_suffix(args.dataset)
    cli.check_output_path(args.out)
    if args.render_only:
        render_only(args.out)
        return
    if args.epsilon is None:
        if args.dataset not in EPSILON:
            p.error(f"--epsilon has no default for {args.dataset}")
        args.epsilon = EPSILON[args.dataset]

    from bench import apgd_runs

    implementations = apgd_runs.choose(args.implementations, args.official_path)
    official = apgd_runs.official_source(args.official_path) if args.official_path else None

    from remix_jax import runtime

    runtime.configure()
    import jax
    import numpy as np

    from remix_jax import data, evaluation
    from remix_jax.pretrained import load_pretrained

    pre = load_pretrained(args.dataset)
    images, labels = data.load(args.dataset, "test", args.data_dir)
    if len(images) < args.num_examples:
        sys.exit(f"error: the test split has only {len(images)} images")
    x = np.asarray(data.to_float(images[: args.num_examples]), np.float32)
    y = np.asarray(labels[: args.num_examples], np.int32)
    logits_fn = jax.jit(pre.logits_fn)
    clean = evaluation.predict(logits_fn, x) == y
    net, port, classes = None, None, int(np.asarray(logits_fn(x[:1])).shape[-1])
    if any(not i.startswith("ours") for i in implementations):
        from bench.torch_ports import checked_port

        net, port = checked_port(pre, logits_fn, x)
    header = {
        "settings": {
            "dataset": args.dataset,
            "num_examples": len(x),
            "images": f"the first {len(x)} test images",
            "norm": "linf",
            "epsilon": args.epsilon,
            "steps": args.steps,
            "restarts": 1,
            "rho": 0.75,
            "eot_draws": 1,
            "seed": args.seed,
            "warmup_steps": args.warmup_steps,
            "art_eps_step": 2 * args.epsilon,
            "art_batch_size": len(x),
        },
        "implementations": implementations,
        "clean_accuracy": 100.0 * float(clean.mean()),
        "torch_port": port,
        "official": official,
    }
    run = apgd_runs.runners(pre.logits_fn, net, classes)
    _measure(args, header, run, logits_fn, x, y)


def _measure(args, header: dict, run: dict, logits_fn, x, y) -> dict:
    """Warm-up and timed call of every implementation, judged alike; rewrites the result
    files after each; returns the last result written."""
    from remix_jax import attack_quality

    rows, per_example = [], {}
    payload = None
    for impl in header["implementations"]:
        who, loss = impl.split("-")
        settings = (args.epsilon, args.steps, args.seed)
        print(f"[{time.strftime('%H:%M:%S')}] {impl} ...", flush=True)
        load = os.getloadavg()[0]
        start = time.perf_counter()
        run[who](x, y, loss, args.epsilon, args.warmup_steps, args.seed)
        warmup = time.perf_counter() - start
        start = time.perf_counter()
        adv, own_robust = run[who](x, y, loss, *settings)
        seconds = time.perf_counter() - start
        verdict = attack_quality.judge_in_ball(logits_fn, x, y, adv, args.epsilon)
        row = {
            "implementation": impl,
            "loss": loss,
            **attack_quality.summarise_in_ball(verdict),
            "own_robust_accuracy": 100.0 * float(own_robust.mean()),
            "seconds": round(seconds, 2),
            "warmup_seconds": round(warmup, 2),
            "load_before": round(load, 2),
            "load_after": round(os.getloadavg()[0], 2),
        }
        rows.append(row)
        per_example[impl] = {
            "robust": verdict["robust"].tolist(),
            "outside": verdict["outside"].tolist(),
            "own_robust": own_robust.tolist(),
        }
        print(
            f"  robust {row['robust_accuracy']:.1f}% (own verdict "
            f"{row['own_robust_accuracy']:.1f}%), {seconds:.1f} s, warm-up {warmup:.1f} s",
            flush=True,
        )
        payload = result(header, rows, per_example, y)
        write(args.out, payload)
    print(markdown(payload))
    return payload


def compare(rows: list, per_example: dict) -> list:
    """Per loss and reference: ours vs the reference's robust accuracy and time.

    Returns one dict per reference row with a run of ours on the same loss: loss,
    reference, ours / reference robust accuracy (%), difference (ours - reference,
    points), within (ours <= reference + TOLERANCE), broken_by_ours_only /
    broken_by_reference_only (images robust to one and not the other), and
    speedup (the reference's seconds / ours).
    """
    out = []
    by_name = {r["implementation"]: r for r in rows}
    for ref in rows:
        ours = by_name.get(f"ours-{ref['loss']}")
        if ref["implementation"].startswith("ours") or ours is None:
            continue
        mine = per_example[ours["implementation"]]["robust"]
        theirs = per_example[ref["implementation"]]["robust"]
        out.append(
            {
                "loss": ref["loss"],
                "reference": ref["implementation"],
                "ours": ours["robust_accuracy"],
                "theirs": ref["robust_accuracy"],
                "difference": round(ours["robust_accuracy"] - ref["robust_accuracy"], 6),
                "within": ours["robust_accuracy"] <= ref["robust_accuracy"] + TOLERANCE,
                "broken_by_ours_only": sum(t and not m for m, t in zip(mine, theirs, strict=True)),
                "broken_by_reference_only": sum(
                    m and not t for m, t in zip(mine, theirs, strict=True)
                ),
                "speedup": round(ref["seconds"] / ours["seconds"], 2),
            }
        )
    return out


def result(header: dict, rows: list, per_example: dict, labels) -> dict:
    """A result file's content: header, rows, comparisons, versions, per-image verdicts,
    labels and provenance."""
    from bench.apgd_runs import versions
    from remix_jax import provenance

    return {
        **header,
        "rows": rows,
        "comparisons": compare(rows, per_example),
        "versions": versions(),
        "per_example": per_example,
        "labels": [int(v) for v in labels],
        **provenance.stamp(),
    }


def _pct(v) -> str:
    return "-" if v is None else f"{v:.1f}%"


def markdown(payload: dict) -> str:
    """The result's tables (every number from ``payload``)."""
    s = payload["settings"]
    lines = [
        "# APGD against the reference implementations",
        "",
        f"{s['dataset']}, {s['images']} (clean accuracy {payload['clean_accuracy']:.1f}%), "
        f"L-inf epsilon {s['epsilon']:.6g}, {s['steps']} steps, {s['restarts']} restart, "
        f"rho {s['rho']}, no EOT, seed {s['seed']}, the whole batch at once. Robust: the "
        "returned image, projected into the ball and [0, 1], still classified correctly "
        "by our JAX classifier. Seconds: the timed call, after a warm-up call of "
        f"{s['warmup_steps']} steps (shown apart; ours compiles there).",
        "",
        "| implementation | robust accuracy | own network's verdict | returned outside "
        "the ball | seconds | warm-up seconds | load average (1 min) before / after |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in payload["rows"]:
        lines.append(
            f"| {r['implementation']} | {_pct(r['robust_accuracy'])} | "
            f"{_pct(r['own_robust_accuracy'])} | {r['outside']} | {r['seconds']:.1f} | "
            f"{r['warmup_seconds']:.1f} | {r['load_before']:.1f} / {r['load_after']:.1f} |"
        )
    if payload["comparisons"]:
        lines += [
            "",
            f"Ours against each reference (within: ours at most {TOLERANCE:g} point above):",
            "",
            "| loss | reference | ours | reference | ours - reference | within | broken by "
            "ours only | by the reference only | time: reference / ours |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for c in payload["comparisons"]:
            lines.append(
                f"| {c['loss']} | {c['reference']} | {_pct(c['ours'])} | {_pct(c['theirs'])} | "
                f"{c['difference']:+.1f} | {'yes' if c['within'] else 'NO'} | "
                f"{c['broken_by_ours_only']} | {c['broken_by_reference_only']} | "
                f"{c['speedup']:.2f}x |"
            )
    port = payload.get("torch_port")
    v = payload["versions"]
    lines += ["", "Versions: " + ", ".join(f"{k} {v[k]}" for k in sorted(v) if k != "executable")]
    if port:
        lines.append(
            f"Torch port: max |logit difference| {port['max_abs_logit_diff']:.1e} on "
            f"{port['images_checked']} images; torch threads {port['torch_threads']}."
        )
    if payload.get("official"):
        lines.append(
            "Official code: fra31/auto-attack, autopgd_base.py SHA-256 "
            f"{payload['official']['autopgd_base_sha256'][:16]}..."
        )
    lines += [
        "",
        f"Command: `{payload['command']}`  ",
        f"Machine: {payload['machine']}; commit {payload['git_commit']}; {payload['date']}",
        "",
    ]
    return "\n".join(lines)


def summary_table(payloads: list) -> str:
    """RESULTS.md's table: per dataset, loss and reference, robust accuracies and times
    (every number from the result files ``payloads``)."""
    lines = [
        "| dataset, epsilon | loss | ours | reference | reference's robust accuracy "
        "| ours - reference | seconds: ours / reference | reference / ours |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for payload in payloads:
        s = payload["settings"]
        seconds = {r["implementation"]: r["seconds"] for r in payload["rows"]}
        for c in payload["comparisons"]:
            lines.append(
                f"| {s['dataset']}, {s['epsilon']:.4g} | {c['loss']} | {_pct(c['ours'])} | "
                f"{c['reference']} | {_pct(c['theirs'])} | {c['difference']:+.1f} | "
                f"{seconds['ours-' + c['loss']]:.1f} / {seconds[c['reference']]:.1f} | "
                f"{c['speedup']:.2f}x |"
            )
    return "\n".join(lines) + "\n"


def write(out: str, payload: dict) -> None:
    """``<out>.json`` and ``<out>.md``, each atomically."""
    from remix_jax.result_files import write_json, write_text

    write_json(out + ".json", payload)
    write_text(out + ".md", markdown(payload))


def render_only(out: str) -> None:
    """Recomputes the comparisons of a stored run from its rows and per-image verdicts
    and rewrites <out>.json / .md; the run's own provenance is kept."""
    import json

    with open(out + ".json") as f:
        payload = json.load(f)
    payload["comparisons"] = compare(payload["rows"], payload["per_example"])
    write(out, payload)
    print(markdown(payload))


if __name__ == "__main__":
    main()
