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
         network (bench.reference_attacks.torch_port): CW = tanh change of
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
  the same defense in PyTorch with the same masks (checked equal to ours first).

overhead: seconds per iteration of our CW / EAD (inside the attack, as in step)
  against one jitted forward + input-gradient call of the bare network: what the
  attack's own work (change of variables, loss, optimiser, judging, best, abort)
  adds on top of the network.

Writes results/bench/speed_<part>_<platform>[_cifar10].json (atomically) and prints a
table.
"""

from __future__ import annotations

import argparse
import sys
import time

from remix_jax import datasets
from remix_jax.cli import DATA_DIR_HELP, HelpFormatter, add_dataset_flag

TORCH_TOLERANCE = 1e-4  # max |difference| allowed between our and torch's outputs


def best_time(fn, repeats: int) -> float:
    """Best wall seconds of ``repeats`` calls after one warm-up call."""
    import jax

    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return min(times)


def torch_cw_steps(net, x, y, iterations, *, confidence=0.0, const=1.0, lr=1e-2):
    """``iterations`` plain CW-L2 iterations in torch; returns a function that runs them."""
    import torch

    x = torch.from_numpy(x)
    y = torch.from_numpy(y).long()
    onehot = torch.nn.functional.one_hot(y, 10).float()
    w0 = torch.atanh((x * 2 - 1) * 0.999999)

    def run():
        w = w0.clone().requires_grad_()
        opt = torch.optim.Adam([w], lr=lr)
        best_l2 = torch.full((len(x),), float("inf"))
        best_adv = x.clone()
        for _ in range(iterations):
            opt.zero_grad(set_to_none=True)
            adv = (torch.tanh(w) + 1) / 2
            logits = net(adv)
            real = (logits * onehot).sum(1)
            other = (logits - 1e4 * onehot).max(1).values
            l2 = ((adv - x) ** 2).sum((1, 2, 3))
            loss = l2 + const * torch.clamp(real - other + confidence, min=0)
            loss.sum().backward()
            opt.step()
            with torch.no_grad():  # judge the candidate, keep the best success
                better = (other - real >= confidence) & (l2 < best_l2)
                best_l2 = torch.where(better, l2, best_l2)
                best_adv = torch.where(better[:, None, None, None], adv, best_adv)
        return best_adv

    return run


def torch_ead_steps(net, x, y, iterations, *, beta=0.1, confidence=0.0, const=1.0, lr=1e-2):
    """``iterations`` plain EAD (FISTA) iterations in torch."""
    import torch

    x = torch.from_numpy(x)
    y = torch.from_numpy(y).long()
    onehot = torch.nn.functional.one_hot(y, 10).float()

    def run():
        current, slack = x.clone(), x.clone()
        best_score = torch.full((len(x),), float("inf"))
        best_adv = x.clone()
        for k in range(iterations):
            slack.requires_grad_()
            logits = net(slack)
            real = (logits * onehot).sum(1)
            other = (logits - 1e4 * onehot).max(1).values
            loss = ((slack - x) ** 2).sum() + const * torch.clamp(
                real - other + confidence, min=0
            ).sum()
            (grad,) = torch.autograd.grad(loss, slack)
            with torch.no_grad():
                rate = lr * (1 - k / iterations) ** 0.5
                z = slack - rate * grad
                diff = z - x
                shrunk = torch.where(
                    diff > beta,
                    torch.clamp(z - beta, max=1.0),
                    torch.where(diff < -beta, torch.clamp(z + beta, min=0.0), x),
                )
                slack = shrunk + k / (k + 3) * (shrunk - current)
                current = shrunk
                # judge the new iterate (EN rule), keep the best success
                judged = net(shrunk)
                margin = (judged - 1e4 * onehot).max(1).values - (judged * onehot).sum(1)
                delta = shrunk - x
                score = beta * delta.abs().sum((1, 2, 3)) + (delta**2).sum((1, 2, 3))
                better = (margin >= confidence) & (score < best_score)
                best_score = torch.where(better, score, best_score)
                best_adv = torch.where(better[:, None, None, None], shrunk, best_adv)
        return best_adv

    return run


def torch_autoencoder(params, config):
    """The stride-1 SkipAutoencoder in torch (NCHW, channels_last), same weights."""
    import numpy as np
    import torch
    from torch import nn

    if set(config.strides) != {1}:
        raise ValueError("the torch port covers stride-1 autoencoders only")
    depth = len(config.features)
    in_ch = config.channels + int(config.mask_channel)

    def conv(p):  # a stride-1 SAME transposed conv (Flax, kernel not flipped) is this conv
        kernel = np.asarray(p["kernel"])  # (3, 3, in, out)
        layer = nn.Conv2d(kernel.shape[2], kernel.shape[3], 3, padding=1)
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()))
            layer.bias.copy_(torch.from_numpy(np.array(p["bias"])))
        return layer

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.ModuleList([conv(params[f"Conv_{i}"]) for i in range(depth)])
            self.dec = nn.ModuleList([conv(params[f"ConvTranspose_{j}"]) for j in range(depth)])

        def forward(self, x, mask=None):  # NCHW
            h = x
            if config.mask_channel:
                h = torch.cat([x, 2 * mask.mean(1, keepdim=True) - 1], 1)
            encoded = []
            for layer in self.enc:
                h = torch.relu(layer(h))
                encoded.append(h)
            for j, i in enumerate(reversed(range(1, depth))):
                h = self.dec[j](h)
                if i % config.skip_every == 0:
                    h = h + encoded[i - 1]
                h = torch.relu(h)
            return torch.sigmoid(self.dec[depth - 1](h))

    assert in_ch == Net().enc[0].in_channels
    return Net().eval().to(memory_format=torch.channels_last)


def part_step(args, pre, x, y) -> list[dict]:
    import numpy as np
    import torch

    from bench.reference_attacks import torch_port
    from remix_jax.attacks import cw_l2, ead

    net = torch_port(pre).to(memory_format=torch.channels_last)
    xs, ys = np.asarray(x), np.asarray(y)
    settings = dict(
        binary_search_steps=1, max_iterations=args.iterations, abort_early=False, initial_const=1.0
    )
    ours = {
        "cw": lambda: cw_l2(pre.logits_fn, x, y, **settings),
        "ead": lambda: ead(pre.logits_fn, x, y, beta=args.beta, **settings),
    }
    theirs = {
        "cw": torch_cw_steps(net, xs, ys, args.iterations),
        "ead": torch_ead_steps(net, xs, ys, args.iterations, beta=args.beta),
    }
    rows = []
    for name in args.attacks:
        t_ours = best_time(ours[name], args.repeats)
        t_torch = best_time(theirs[name], args.repeats)
        work = args.iterations * len(xs)
        rows.append(
            {
                "attack": name,
                "batch": len(xs),
                "iterations": args.iterations,
                "ours_iteration_images_per_s": round(work / t_ours, 1),
                "torch_iteration_images_per_s": round(work / t_torch, 1),
                "speedup": round(t_torch / t_ours, 3),
            }
        )
        print(
            f"{name} step: ours {work / t_ours:,.0f}, torch {work / t_torch:,.0f} "
            f"iteration-images/s -> {t_torch / t_ours:.2f}x",
            flush=True,
        )
    return rows


def part_defend(args, pre, x) -> list[dict]:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    from remix_jax import defend
    from remix_jax.defense import CPU_CHUNK
    from remix_jax.masking import batch_random_masks

    remix = pre.remix
    key = jax.random.key(0)
    rows = []

    a = jax.random.normal(jax.random.key(1), (2048, 2048), jnp.float32)
    matmul = jax.jit(jnp.matmul)
    t = best_time(lambda: matmul(a, a), args.repeats)
    ceiling = 2 * 2048**3 / t / 1e9
    rows.append(
        {
            "what": "matmul 2048x2048 float32 (ceiling)",
            "seconds": t,
            "gflop_per_s": round(ceiling, 1),
        }
    )

    run = jax.jit(lambda v: defend(remix, key, v))  # chunk="auto", what users get
    # FLOPs of the one-pass program: XLA counts a loop's body once, not per chunk
    one_pass = jax.jit(lambda v: defend(remix, key, v, chunk=None))
    cost = one_pass.lower(x).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    flops = float(cost["flops"])
    for chunk in ["auto", *args.chunks]:
        fn = (
            run
            if chunk == "auto"
            else jax.jit(
                lambda v, chunk=chunk: defend(remix, key, v, chunk=None if chunk == 0 else chunk)
            )
        )
        t = best_time(lambda fn=fn: fn(x), args.repeats)
        label = {"auto": f"auto = {CPU_CHUNK} on CPU", 0: "None: whole batch"}.get(chunk, chunk)
        rows.append(
            {
                "what": f"defend (reformer + {remix.n_masks} masks, K=1), chunk {label}",
                "seconds": t,
                "images_per_s": round(len(x) / t, 1),
                "flops_per_image": flops / len(x),
                "gflop_per_s": round(flops / t / 1e9, 1),
                "fraction_of_ceiling": round(flops / t / 1e9 / ceiling, 3),
            }
        )

    # the layers defend is made of, alone, at the same batch
    h, w, c = x.shape[1:]
    width = remix.inpainter_config.features[0]
    layers = {
        f"conv 3x3 {width}->{width}": (width, width),
        f"conv 3x3 {c + 1}->{width} (inpainter's first)": (c + 1, width),
        f"conv 3x3 {width}->{c} (last)": (width, c),
    }
    for what, (cin, cout) in layers.items():
        inp = jax.random.uniform(key, (len(x), h, w, cin))
        kernel = jax.random.normal(key, (3, 3, cin, cout)) * 0.1
        conv = jax.jit(
            lambda v, k: jax.lax.conv_general_dilated(
                v, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
            )
        )
        t = best_time(lambda inp=inp, kernel=kernel, conv=conv: conv(inp, kernel), args.repeats)
        layer_flops = 2 * len(x) * h * w * 9 * cin * cout
        rows.append(
            {
                "what": what,
                "seconds": t,
                "gflop_per_s": round(layer_flops / t / 1e9, 1),
                "fraction_of_ceiling": round(layer_flops / t / 1e9 / ceiling, 3),
            }
        )

    # the same defense in torch, with our masks
    masks = batch_random_masks(jax.random.fold_in(key, 0), len(x), (h, w, c), remix.n_masks)
    masks = np.moveaxis(np.asarray(masks, np.float32), 1, 0)  # (n, B, H, W, 1)
    reformer = torch_autoencoder(remix.reformer, remix.reformer_config)
    inpainter = torch_autoencoder(remix.inpainter, remix.inpainter_config)
    tx = torch.from_numpy(np.asarray(x)).permute(0, 3, 1, 2)
    tm = torch.from_numpy(masks).permute(0, 1, 4, 2, 3).reshape(-1, 1, h, w)

    def torch_defend():
        with torch.inference_mode():
            reformed = reformer(tx)
            copies = reformed.repeat(remix.n_masks, 1, 1, 1) * tm
            restored = inpainter(copies, tm) * (1 - tm)
            return restored.reshape(remix.n_masks, len(x), c, h, w).sum(0)

    gap = float(np.max(np.abs(torch_defend().permute(0, 2, 3, 1).numpy() - np.asarray(run(x)))))
    if gap > TORCH_TOLERANCE:
        sys.exit(f"error: the torch defense differs from ours by {gap:.2e}")
    t = best_time(torch_defend, args.repeats)
    rows.append(
        {
            "what": "defend in torch (same weights and masks)",
            "seconds": t,
            "images_per_s": round(len(x) / t, 1),
            "gflop_per_s": round(flops / t / 1e9, 1),
            "fraction_of_ceiling": round(flops / t / 1e9 / ceiling, 3),
            "max_abs_difference_to_ours": gap,
        }
    )
    for row in rows:
        row["seconds"] = round(row["seconds"], 4)
        print("  ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    return rows


def part_overhead(args, pre, x, y) -> list[dict]:
    """An attack iteration against the bare network gradient it is built on."""
    import jax
    import jax.numpy as jnp

    from remix_jax.attacks import cw_l2, ead

    weights = jnp.arange(10.0)
    gradient = jax.jit(jax.grad(lambda v: jnp.sum(pre.logits_fn(v) * weights)))
    t_net = best_time(lambda: gradient(x), args.repeats)
    settings = dict(
        binary_search_steps=1, max_iterations=args.iterations, abort_early=False, initial_const=1.0
    )
    ours = {
        "cw": lambda: cw_l2(pre.logits_fn, x, y, **settings),
        "ead": lambda: ead(pre.logits_fn, x, y, beta=args.beta, **settings),
    }
    rows = [
        {
            "what": "classifier forward + input gradient, one jitted call",
            "seconds_per_step": round(t_net, 4),
        }
    ]
    for name in args.attacks:
        t = best_time(ours[name], args.repeats) / args.iterations
        rows.append(
            {
                "what": f"{name} iteration inside the attack",
                "seconds_per_step": round(t, 4),
                "relative_to_network_gradient": round(t / t_net, 3),
            }
        )
        print(
            f"{name}: {t * 1e3:.0f} ms per iteration vs {t_net * 1e3:.0f} ms for the "
            f"network's gradient alone ({t / t_net:.2f}x)",
            flush=True,
        )
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    p.add_argument("--part", choices=["step", "defend", "overhead"], required=True)
    add_dataset_flag(p)
    p.add_argument("--attacks", nargs="+", choices=["cw", "ead"], default=["cw", "ead"])
    p.add_argument("--batch", type=int, default=1000, help="images per step / defend call")
    p.add_argument("--iterations", type=int, default=50, help="timed attack iterations")
    p.add_argument("--repeats", type=int, default=3, help="timed runs (best is kept)")
    p.add_argument(
        "--chunks",
        type=int,
        nargs="*",
        default=[0, 64, 128],
        help="defend's chunk sizes timed besides the default (0 = whole batch)",
    )
    p.add_argument("--beta", type=float, default=0.1, help="EAD's L1 weight")
    p.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    p.add_argument(
        "--out",
        default=None,
        help="JSON path (default: results/bench/speed_<part>_<backend>[_cifar10].json)",
    )
    args = p.parse_args(argv)
    try:
        import torch
    except ImportError:
        sys.exit("error: bench.speed needs torch (see bench/reference_attacks.py for the venv)")

    from remix_jax import runtime

    runtime.configure()
    runtime.use_full_precision()
    import jax

    from bench.common import setup, write_json
    from remix_jax import provenance

    torch.set_grad_enabled(True)
    pre, x, y = setup(args.dataset, args.batch, args.data_dir)
    if args.part == "defend":
        rows = part_defend(args, pre, x)
    else:
        rows = (part_step if args.part == "step" else part_overhead)(args, pre, x, y)
    suffix = datasets.file_suffix(args.dataset)
    out = args.out or f"results/bench/speed_{args.part}_{jax.default_backend()}{suffix}.json"
    write_json(
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
