"""The paper's Fig. 2: defense accuracy against CW / EAD vs confidence kappa.

    python -m eval.sweep --attack cw [--dataset mnist] [--preset cpu|paper]

Oblivious setting: adversarial examples are crafted on the bare classifier for the
first --num-examples test images it classifies correctly, at every kappa of the grid
(MNIST 0, 5, ..., 40; CIFAR-10 0, 10, ..., 100), and cached per kappa (and, while a
kappa is in progress, per --batch-size batch) under results/<dataset>/cache/<attack>/
(--preset paper) or .../<attack>-<preset>/ so an interrupted sweep resumes where it
stopped.
Then every defense is scored on the same images (none; REMIX's reformer; MagNet's
reformer; MagNet = its detectors + reformer, an input counting as defended when
rejected or classified right; REMIX mask-inpaint without and with the reformer): on
the examples that fooled the bare classifier ("fooled") and, labelled separately, on
all N with failed attacks left as the clean image ("all"). Randomized defenses: mean
and spread over --num-keys keys.
Success is re-checked on the scoring machine (margin >= kappa with its own
arithmetic), so caches crafted elsewhere are judged here.
"""

from __future__ import annotations

import argparse
import json
import math
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
from remix_jax.sweep_report import defenses_of, markdown, write_outputs


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    p.add_argument("--attack", choices=attack_registry.names("confidence"), required=True)
    add_dataset_flag(p)
    p.add_argument(
        "--num-examples",
        type=int,
        default=1000,
        help="first N test images the bare classifier gets right",
    )
    p.add_argument(
        "--confidences",
        type=float,
        nargs="+",
        default=None,
        help="kappa grid (default: the paper's for the dataset)",
    )
    p.add_argument(
        "--preset",
        choices=sorted(attack_registry.PRESETS),
        default="cpu",
        help="attack budget: "
        + "; ".join(
            f"{k} {v['binary_search_steps']} x {v['max_iterations']}"
            for k, v in sorted(attack_registry.PRESETS.items())
        ),
    )
    p.add_argument("--binary-search-steps", type=int, default=None, help="overrides --preset")
    p.add_argument("--max-iterations", type=int, default=None, help="overrides --preset")
    p.add_argument("--initial-const", type=float, default=1e-3, help="first c of the search")
    p.add_argument("--beta", type=float, default=0.1, help="EAD's L1 weight (paper: 0.1)")
    p.add_argument(
        "--decision-rule",
        choices=["EN", "L1"],
        default="EN",
        help="EAD: which distortion picks the best example (EN = L2 + beta L1)",
    )
    p.add_argument(
        "--targeted", action="store_true", help="random wrong target labels from a fixed key"
    )
    p.add_argument("--batch-size", type=int, default=1000, help="images per attack call")
    p.add_argument("--num-keys", type=int, default=10, help="keys per randomized defense")
    p.add_argument(
        "--iterations",
        type=int,
        nargs="+",
        default=[1],
        help="REMIX mask-inpaint rounds K to score",
    )
    p.add_argument("--craft-only", action="store_true", help="fill the cache, score nothing")
    p.add_argument("--no-magnet", action="store_true", help="leave out the MagNet rows")
    p.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    p.add_argument("--checkpoint-root", default=None, help=CHECKPOINT_ROOT_HELP)
    p.add_argument(
        "--inpainter",
        default=None,
        help="score REMIX with this inpainter checkpoint folder instead of the "
        "shipped one (the caches do not depend on it; pass --out)",
    )
    p.add_argument(
        "--cache-dir",
        default=None,
        help="adversarial examples per kappa (default: "
        "results/<dataset>/cache/<attack>[-<preset>], -cpu for the cpu preset)",
    )
    p.add_argument("--out", default=None, help="default: results/<dataset>/<attack>")
    p.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite the CSV, Markdown and plot from the existing <out>.json",
    )
    args = p.parse_args(argv)
    for name in ("num_examples", "batch_size", "num_keys"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.confidences and not all(0 <= k < math.inf for k in args.confidences):
        p.error("--confidences must be finite and >= 0")
    for name in ("binary_search_steps", "max_iterations"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if min(args.iterations) < 1:
        p.error("--iterations must be >= 1 (mask-inpaint rounds K)")
    if not (args.beta >= 0 and args.initial_const > 0):  # also false for NaN
        p.error("--beta must be >= 0 and --initial-const > 0")
    if args.inpainter and not args.out:
        p.error("--inpainter needs --out (the default results are the shipped defense's)")
    if args.craft_only and args.render_only:
        p.error("--craft-only and --render-only exclude each other")
    return args


def attack_settings(args) -> dict:
    settings = dict(attack_registry.PRESETS[args.preset])
    if args.binary_search_steps is not None:
        settings["binary_search_steps"] = args.binary_search_steps
    if args.max_iterations is not None:
        settings["max_iterations"] = args.max_iterations
    settings.update(attack_registry.get(args.attack).own_settings(args))
    settings["targeted"] = args.targeted
    if args.initial_const != 1e-3:  # recorded only when it departs from the reference
        settings["initial_const"] = args.initial_const
    return settings


def main(argv=None) -> None:
    args = parse(argv)
    if args.render_only:
        out = args.out or os.path.join(
            "results", args.dataset, args.attack + ("-targeted" if args.targeted else "")
        )
        if not os.path.isfile(out + ".json"):
            sys.exit(f"error: --render-only needs {out}.json")
        with open(out + ".json") as f:
            result = json.load(f)
        write_outputs(out, result, defenses_of(result))
        print(f"-> {out}.csv / .md / .png")
        return
    name = args.attack + ("-targeted" if args.targeted else "")
    if not args.craft_only:
        check_output_path(args.out or os.path.join("results", args.dataset, name))
    from remix_jax import runtime

    runtime.configure()
    runtime.use_full_precision()
    import jax
    import numpy as np
    from tqdm import tqdm

    from remix_jax import adversarial_cache, components, data, evaluation, progress, provenance
    from remix_jax.adversarial_cache import AdversarialCache
    from remix_jax.pretrained import load_magnet, load_pretrained

    skip_magnet = args.no_magnet or args.craft_only
    try:
        pre = load_pretrained(args.dataset, args.checkpoint_root, inpainter=args.inpainter)
        magnet = None if skip_magnet else load_magnet(args.dataset, args.checkpoint_root)
        split = data.load_split(args.dataset, "test", args.data_dir)
    except (FileNotFoundError, ValueError, NotImplementedError) as e:
        hint = " (or leave MagNet out with --no-magnet)" if "magnet" in str(e) else ""
        sys.exit(f"error: {e}{hint}")
    started = time.time()
    kappas = args.confidences or list(datasets.get(args.dataset).kappa_grid)
    settings = attack_settings(args)
    name = args.attack + ("-targeted" if args.targeted else "")
    cache_dir = args.cache_dir or adversarial_cache.default_folder(args.dataset, name, args.preset)
    os.makedirs(cache_dir, exist_ok=True)

    machine = provenance.machine()
    x_all = data.to_float(split.images)
    correct = np.flatnonzero(evaluation.predict(pre.logits_fn, x_all) == split.labels)
    if len(correct) < args.num_examples:
        sys.exit(
            f"error: --num-examples {args.num_examples}: the classifier gets only "
            f"{len(correct)} of the {len(x_all)} test images right"
        )
    chosen = correct[: args.num_examples]
    x, y = x_all[chosen], split.labels[chosen]
    attack_labels = adversarial_cache.attack_labels(
        y, datasets.get(args.dataset).num_classes, args.targeted
    )
    attack = attack_registry.get(args.attack).resolve()
    cache = AdversarialCache(cache_dir, tuple(chosen.tolist()), settings, log=tqdm.write)

    def craft(kappa):
        bar = tqdm(total=len(x), desc=f"{name} kappa={kappa:g}", unit="img", leave=False)
        steps = settings["binary_search_steps"]

        def attack_batch(sl):
            label = f"images {sl.start}-{sl.start + len(x[sl])}: search step"

            def show_step(done):
                # one batch is tens of minutes on a CPU: say which search step
                bar.set_postfix_str(f"{label} {done}/{steps} done")

            show_step(0)
            res = attack(
                pre.logits_fn,
                x[sl],
                attack_labels[sl],
                confidence=kappa,
                on_step=show_step,
                **settings,
            )
            return {k: getattr(res, k) for k in adversarial_cache.FIELDS}

        def on_batch(start, part, crafted):
            if crafted:
                tqdm.write(
                    f"{name} kappa={kappa:g} images {start}-{start + len(part['success'])}"
                    f": {part['seconds']:.0f} s wall, {part['cpu_seconds']:.0f} s CPU"
                )
            bar.update(len(part["success"]))

        try:
            # each finished batch is kept on disk, so a killed run resumes mid-kappa,
            # even when it is resumed with another --batch-size
            return cache.craft(
                kappa, attack_batch, args.batch_size, machine=machine, on_batch=on_batch
            )
        except adversarial_cache.SettingsMismatch as e:
            sys.exit(f"error: {e}")
        finally:
            bar.close()

    from remix_jax.attacks.common import is_success

    verify = jax.jit(lambda a, t, kappa: is_success(pre.logits_fn(a), t, args.targeted, kappa))

    def verified(kappa, c):
        """Success re-checked here: cached examples may come from another machine."""
        here = np.concatenate(
            [
                np.asarray(
                    verify(c["adversarial"][i : i + 1000], attack_labels[i : i + 1000], kappa)
                )
                for i in range(0, len(y), 1000)
            ]
        )
        return {**c, "success_crafted": c["success"], "success": c["success"] & here}

    def crafting_time(c):
        """Seconds spent crafting the kappa, over the batches whose time was kept."""
        t = adversarial_cache.crafting_time(c)
        return {
            "craft_seconds": t["seconds"],
            "craft_cpu_seconds": t["cpu_seconds"],
            "craft_images_timed": t["images_timed"],
            "craft_machines": t["machines"],
        }

    crafted = {}
    for kappa in tqdm(kappas, desc=f"{name} sweep"):
        crafted[kappa] = verified(kappa, craft(kappa))
        ok = crafted[kappa]["success"]
        mean_l2 = f"mean L2 {crafted[kappa]['l2'][ok].mean():.3f}" if ok.any() else "no success"
        tqdm.write(f"{name} kappa={kappa:g}: success {ok.mean():.1%}, {mean_l2}")
    if args.craft_only:
        return

    defenses = evaluation.defense_suite(
        pre.logits_fn,
        pre.remix,
        magnet,
        components.magnet_official_names(args.dataset) if magnet is not None else (),
        args.iterations,
    )
    out = args.out or os.path.join("results", args.dataset, name)
    # every scored kappa is kept until the result is written: a killed scoring resumes
    scoring = progress.ProgressFile(
        out + ".progress.json",
        {
            "settings": settings,
            "indices": chosen.tolist(),
            "num_keys": args.num_keys,
            "defenses": list(defenses),
            "remix": {
                "n_masks": pre.remix.n_masks,
                "per_channel": pre.remix.per_channel,
                "inpainter": pre.remix.inpainter_config.to_dict(),
            },
            "weights": progress.fingerprint(
                pre.classifier_params, pre.remix, *([magnet] if magnet is not None else [])
            ),
        },
    )
    rows = []
    clean_rows = scoring.get("clean") or {}
    if not clean_rows:
        for d, defense in defenses.items():
            right = defense.correct_over_keys(x, y, False, args.num_keys, first_seed=10_000)
            clean_rows[d] = evaluation.summarize([np.mean(r) for r in right])
        scoring.put("clean", clean_rows)
    for kappa in tqdm(kappas, desc="scoring"):
        if (done := scoring.get(f"kappa {kappa:g}")) is not None:
            rows.append(done)
            continue
        c = crafted[kappa]
        ok = c["success"]
        row = {
            "confidence": kappa,
            "attack_success": float(ok.mean() * 100),
            "attack_success_where_crafted": float(c["success_crafted"].mean() * 100),
            "fooled": int(ok.sum()),
            "images": len(y),
            **{
                f"mean_{n}": float(c[n][ok].mean()) if ok.any() else None
                for n in ("l1", "l2", "linf")
            },
            **crafting_time(c),
        }
        for d, defense in defenses.items():
            right = defense.correct_over_keys(c["adversarial"], y, True, args.num_keys)
            row[f"{d} | all"] = evaluation.summarize([r.mean() for r in right])
            row[f"{d} | fooled"] = (
                evaluation.summarize([r[ok].mean() for r in right]) if ok.any() else None
            )
        scoring.put(f"kappa {kappa:g}", row)
        rows.append(row)
    result = {
        "dataset": args.dataset,
        "attack": name,
        "settings": settings,
        "num_examples": len(y),
        "num_keys": args.num_keys,
        "clean": clean_rows,
        "rows": rows,
        "data_source": split.source,
        **({"inpainter": args.inpainter} if args.inpainter else {}),
        "wall_seconds": round(time.time() - started, 1),
        **provenance.stamp(),
    }
    print(markdown(result, list(defenses)))
    provenance.write_unless_reproduced(
        out, result, lambda path, res: write_outputs(path, res, list(defenses))
    )
    scoring.finish()


if __name__ == "__main__":
    main()
