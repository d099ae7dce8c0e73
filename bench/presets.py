"""What a sweep preset costs per kappa: ``python -m bench.presets``.

For each attack (CW-L2, EAD) and sweep preset (``paper`` = 9 x 10,000, ``cpu`` =
9 x 1000) on --num-examples images of --dataset (MNIST or CIFAR-10):

* FLOPs per iteration-image, from XLA's cost analysis of the attack's own jitted
  iteration (classifier forward and backward, plus EAD's forward on the new
  iterate), and the upper bound per kappa (every example runs every iteration; the
  early abort only ever removes work);
* the wall time that bound takes at the committed throughputs,
  ``results/bench/attacks_throughput_<platform>[_cifar10].json`` (this CPU; the H100 when that
  file exists, measured at TF32, so full float32 there is slower by up to the
  TF32 / FP32 peak ratio);
* the crafting time actually measured by ``eval.sweep`` for every kappa whose cache
  kept its batches' times (``results/<dataset>/cache/<attack>[-cpu]/kappa_*.npz``).

Writes results/bench/presets[_cifar10].json and .md (atomically) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os

from bench import common
from remix_jax import datasets, result_files
from remix_jax.cli import (
    DATA_DIR_HELP,
    HelpFormatter,
    add_dataset_flag,
    check_output_path,
    nonnegative_float,
    positive_int,
)

# NVIDIA H100 SXM datasheet: FP32 (no tensor cores) peak, what full float32 can reach
H100_FP32_PEAK = 67e12


def throughput(path: str) -> dict:
    """{attack: (iteration-images / s, machine)} from a committed throughput bench."""
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        bench = json.load(f)
    return {r["attack"]: (r["iteration_images_per_s"], bench["machine"]) for r in bench["rows"]}


def measured_crafting(cache_dir: str) -> list[dict]:
    """Per kappa: seconds spent crafting, on how many images, on which machines."""
    from remix_jax import adversarial_cache

    rows = []
    for kappa, path in adversarial_cache.finished(cache_dir).items():
        t = adversarial_cache.crafting_time(adversarial_cache.read(path)[0])
        if t["images_timed"]:
            rows.append(
                {
                    "confidence": kappa,
                    "seconds": t["seconds"],
                    "cpu_seconds": t["cpu_seconds"],
                    "images_timed": t["images_timed"],
                    "images": t["images"],
                    "machines": t["machines_timed"],
                }
            )
    return rows


def iteration_flops(attack: str, logits_fn, x, y, beta: float) -> float:
    """FLOPs of one attack iteration on the batch (x, y), by XLA's cost analysis."""
    import jax
    import jax.numpy as jnp

    from remix_jax.attacks.cw import CW_L2
    from remix_jax.attacks.ead import EAD, EADOptions
    from remix_jax.attacks.search import Hyper, Spec

    ead = attack == "ead"
    algorithm = EAD if ead else CW_L2
    hyper = Hyper(
        *(jnp.float32(v) for v in (0.0, 1e-2, 1e-3, 0.0, 1.0)),
        extra={"beta": jnp.float32(beta)} if ead else None,
    )
    spec = Spec(
        targeted=False,
        binary_search_steps=9,
        max_iterations=1000,
        abort_early=True,
        options=EADOptions(decision_rule="EN") if ead else None,
    )
    variables = algorithm.reset(x, hyper)
    const = jnp.full(x.shape[0], 1e-3, jnp.float32)

    def one(variables):
        return algorithm.iterate(logits_fn, spec, hyper, x, y, variables, const, 0)

    cost = jax.jit(one).lower(variables).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost["flops"])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    add_dataset_flag(p)
    p.add_argument("--num-examples", type=positive_int, default=1000)
    p.add_argument("--beta", type=nonnegative_float, default=0.1, help="EAD's L1 weight")
    p.add_argument("--bench-dir", default="results/bench")
    p.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    p.add_argument("--out", default=None, help="default results/bench/presets[_cifar10]")
    args = p.parse_args(argv)
    suffix = datasets.file_suffix(args.dataset)
    args.out = args.out or f"results/bench/presets{suffix}"
    check_output_path(args.out)

    common.configure(full_precision=True)
    from remix_jax import provenance
    from remix_jax.attack_registry import PRESETS

    pre, x, y = common.setup(args.dataset, 100, args.data_dir)  # FLOPs per image do not depend on N
    rates = {
        platform: throughput(
            os.path.join(args.bench_dir, f"attacks_throughput_{platform}{suffix}.json")
        )
        for platform in ("cpu", "gpu")
    }
    rows = []
    for attack in ("cw", "ead"):
        per_image = iteration_flops(attack, pre.logits_fn, x, y, args.beta) / len(x)
        for preset, grid in PRESETS.items():
            work = grid["binary_search_steps"] * grid["max_iterations"] * args.num_examples
            row = {
                "attack": attack,
                "preset": preset,
                **grid,
                "images": args.num_examples,
                "flops_per_iteration_image": round(per_image),
                "iteration_images_per_kappa": work,
                "tflop_per_kappa": round(work * per_image / 1e12, 2),
            }
            for platform, by_attack in rates.items():
                if attack in by_attack:
                    rate, machine = by_attack[attack]
                    row[f"{platform}_bound_seconds"] = round(work / rate, 1)
                    row[f"{platform}_machine"] = machine
            row["h100_fp32_peak_bound_seconds"] = round(work * per_image / H100_FP32_PEAK, 1)
            cache = os.path.join("results", args.dataset, "cache", attack)
            row["measured"] = measured_crafting(cache + ("" if preset == "paper" else f"-{preset}"))
            rows.append(row)
    payload = {"dataset": args.dataset, "rows": rows, **provenance.stamp()}
    common.write_json(args.out + ".json", payload)
    text = markdown(payload)
    result_files.write_text(args.out + ".md", text)
    print(text)


def _hours(seconds) -> str:
    if seconds is None:
        return "-"
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def markdown(payload: dict) -> str:
    lines = [
        f"# Sweep presets: cost per kappa ({payload['dataset']})",
        "",
        f"`{payload['command']}` on {payload['machine']}, commit {payload['git_commit'][:10]}.",
        "Bounds assume every example runs every iteration (the early abort only removes "
        "work). GPU bound: the H100 throughput measured at TF32; full float32 (what the "
        "sweeps use) cannot beat the FP32-peak column (67 TFLOP/s without tensor cores).",
        "",
        "| attack | preset | iteration-images per kappa | FLOPs per iteration-image | "
        "TFLOP per kappa | CPU bound | GPU bound (TF32) | H100 FP32 peak | "
        "measured crafting (kappa: time, images) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in payload["rows"]:
        measured = (
            "; ".join(
                f"{m['confidence']:g}: {_hours(m['seconds'])} wall"
                + (f" / {_hours(m['cpu_seconds'])} CPU" if m.get("cpu_seconds") else "")
                + f", {m['images_timed']}"
                for m in r["measured"]
            )
            or "-"
        )
        lines.append(
            f"| {r['attack']} | {r['preset']} ({r['binary_search_steps']} x "
            f"{r['max_iterations']}) | {r['iteration_images_per_kappa']:.2e} | "
            f"{r['flops_per_iteration_image'] / 1e6:.1f} M | {r['tflop_per_kappa']} | "
            f"{_hours(r.get('cpu_bound_seconds'))} | {_hours(r.get('gpu_bound_seconds'))} | "
            f"{_hours(r['h100_fp32_peak_bound_seconds'])} | {measured} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
