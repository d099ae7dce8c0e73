"""Our attack step and ``defend()`` against plain PyTorch, side by side in one run.

``python -m bench.speed --part {step,defend}``, with an interpreter that also has
torch (the reference venv of :mod:`bench.reference_attacks`). Both sides get the
same weights, the same batch and every core of the machine (torch: channels_last,
``torch.get_num_threads()`` threads); each number is the best of --repeats timed
runs after a warm-up run (so compilation is excluded on both sides).

step: iterations x images per second on the shipped classifier (--dataset: MNIST's CNN,
  CIFAR-10's ResNet-9) at --batch.
  ours   the attack's own loop (``cw_l2`` / ``ead``: host-driven jitted chunks),
         early abort off, one search step of --iterations iterations;
  torch  the same iteration written plainly in PyTorch on the torch port of the
         network (bench.torch_ports.torch_port; bench.attack_steps): CW = tanh change of
         variables, margin loss, backward, ``torch.optim.Adam``; EAD = FISTA with
         the projected shrinkage and the square-root learning-rate decay; both
         judge each iteration's candidate and keep the best success, as every
         implementation must (EAD: one more forward pass, on the new iterate).
         This is the floor any PyTorch implementation pays (libraries add to it).
defend: images per second of ``remix_jax.defend`` (the dataset's shipped REMIX: reformer,
  n masks (MNIST 2, CIFAR-10 3), K=1) at --batch (its default chunking, and each of --chunks), its
  FLOPs from XLA's cost analysis and its GFLOP/s against a 2048 x 2048 float32
  matmul timed in the same run (the machine's practical ceiling); a profile of the
  layers it is made of (3x3 convolutions 32->32, the thin first and last ones); and
  the same defense in PyTorch with the same masks (checked equal to ours first;
  bench.speed_defend).

overhead: seconds per iteration of our CW / EAD (inside the attack, as in step)
  against one jitted forward + input-gradient call of the bare network: what the
  attack's own work (change of variables, loss, optimiser, judging, best, abort)
  adds on top of the network.

Writes results/bench/speed_<part>_<platform>[_cifar10].json (atomically) and prints a
table.
"""

from __future__ import annotations

import sys

from bench import common
from remix_jax import datasets
from remix_jax.cli import (
    DATA_DIR_HELP,
    check_output_path,
    nonnegative_float,
    nonnegative_int,
    positive_int,
)


def _each_attack(args, pre, x, y, measure) -> list[dict]:
    """One row per --attacks entry, printed as it comes: ``measure(name, seconds)`` ->
    (row, line), given the best time of our attack's --iterations iterations."""
    from bench.attack_steps import best_time, our_steps

    ours = our_steps(pre.logits_fn, x, y, args.iterations, args.beta)
    rows = []
    for name in args.attacks:
        row, line = measure(name, best_time(ours[name], args.repeats))
        rows.append(row)
        print(line, flush=True)
    return rows


def part_step(args, pre, x, y) -> list[dict]:
    """Iteration-images per second of our attack step and torch's, one row per attack."""
    import numpy as np
    import torch

    from bench.attack_steps import best_time, torch_cw_steps, torch_ead_steps
    from bench.torch_ports import torch_port

    net = torch_port(pre).to(memory_format=torch.channels_last)
    xs, ys = np.asarray(x), np.asarray(y)
    theirs = {
        "cw": torch_cw_steps(net, xs, ys, args.iterations),
        "ead": torch_ead_steps(net, xs, ys, args.iterations, beta=args.beta),
    }
    work = args.iterations * len(xs)

    def measure(name, t_ours):
        t_torch = best_time(theirs[name], args.repeats)
        row = {
            "attack": name,
            "batch": len(xs),
            "iterations": args.iterations,
            "ours_iteration_images_per_s": round(work / t_ours, 1),
            "torch_iteration_images_per_s": round(work / t_torch, 1),
            "speedup": round(t_torch / t_ours, 3),
        }
        return row, (
            f"{name} step: ours {work / t_ours:,.0f}, torch {work / t_torch:,.0f} "
            f"iteration-images/s -> {t_torch / t_ours:.2f}x"
        )

    return _each_attack(args, pre, x, y, measure)


def part_overhead(args, pre, x, y) -> list[dict]:
    """An attack iteration against the bare network gradient it is built on."""
    import jax
    import jax.numpy as jnp

    from bench.attack_steps import best_time

    weights = jnp.arange(10.0)
    gradient = jax.jit(jax.grad(lambda v: jnp.sum(pre.logits_fn(v) * weights)))
    t_net = best_time(lambda: gradient(x), args.repeats)

    def measure(name, seconds):
        t = seconds / args.iterations
        row = {
            "what": f"{name} iteration inside the attack",
            "seconds_per_step": round(t, 4),
            "relative_to_network_gradient": round(t / t_net, 3),
        }
        return row, (
            f"{name}: {t * 1e3:.0f} ms per iteration vs {t_net * 1e3:.0f} ms for the "
            f"network's gradient alone ({t / t_net:.2f}x)"
        )

    network = {
        "what": "classifier forward + input gradient, one jitted call",
        "seconds_per_step": round(t_net, 4),
    }
    return [network, *_each_attack(args, pre, x, y, measure)]


def main(argv=None) -> None:
    p = common.step_parser(__doc__, ["step", "defend", "overhead"], "images per step / defend call")
    p.add_argument("--repeats", type=positive_int, default=3, help="timed runs (best is kept)")
    p.add_argument(
        "--chunks",
        type=nonnegative_int,
        nargs="*",
        default=[0, 64, 128],
        help="defend's chunk sizes timed besides the default (0 = whole batch)",
    )
    p.add_argument("--beta", type=nonnegative_float, default=0.1, help="EAD's L1 weight")
    p.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    common.add_out_flag(p, "results/bench/speed_<part>_<backend>[_cifar10].json")
    args = p.parse_args(argv)
    if args.out:  # the default's folder is checked once JAX names the platform
        check_output_path(args.out)
    try:
        import torch
    except ImportError:
        sys.exit("error: bench.speed needs torch (see bench/reference_attacks.py for the venv)")

    common.configure(full_precision=True)
    suffix = datasets.file_suffix(args.dataset)
    out = common.result_path(args.out, f"results/bench/speed_{args.part}_<backend>{suffix}.json")
    from remix_jax import provenance

    torch.set_grad_enabled(True)
    pre, x, y = common.setup(args.dataset, args.batch, args.data_dir)
    if args.part == "defend":
        from bench.speed_defend import part_defend

        rows = part_defend(args, pre, x)
    else:
        rows = (part_step if args.part == "step" else part_overhead)(args, pre, x, y)
    common.write_json(
        out,
        {
            "part": args.part,
            "dataset": args.dataset,
            "batch": len(x),
            "iterations": args.iterations,
            "repeats": args.repeats,
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "rows": rows,
            **provenance.stamp(),
        },
    )
    print(f"-> {out}")


if __name__ == "__main__":
    main()
