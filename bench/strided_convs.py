"""Strided and transposed convolutions, Flax's vs remix_jax's: ``python -m bench.strided_convs``.

XLA's CPU backend runs a convolution with a dilated input (a stride-2 transposed
convolution, a strided convolution's input gradient) slowly; ``remix_jax.models.layers``
computes the same layers as stride-1 convolutions (sub-pixel) and patch matrix
products (im2col). This bench times Defense-GAN's networks (every layer 5x5 stride 2),
which use them, both ways, side by side in one run: forward, the gradient in the input
(what its projection and an attack take) and the gradient of WGAN-GP's penalty in the
critic's parameters (a double backward). The same weights, so the largest output
difference is reported too.

Writes results/bench/strided_convs_<backend>.json and .md.
"""

from __future__ import annotations

import contextlib
from unittest import mock

from bench import common
from remix_jax.cli import parser, positive_int

OUT = "results/bench/strided_convs_<backend>.json"  # the default --out


def main(argv=None) -> None:
    p = parser(__doc__)
    p.add_argument("--batch", type=positive_int, default=50, help="images per call")
    p.add_argument("--repeats", type=positive_int, default=5, help="timed calls (median)")
    common.add_out_flag(p, OUT)
    args = p.parse_args(argv)
    common.configure()
    out = common.result_path(args.out, OUT)
    import jax
    import jax.numpy as jnp
    import numpy as np

    from remix_jax import defensegan, provenance, result_files
    from remix_jax.models import layers
    from remix_jax.models.defensegan import DGCritic

    def flax_layers():  # the rewrites step aside: every layer takes Flax's own path
        return mock.patch.object(layers, "_plain_2d", lambda module, inputs: False)

    def median_ms(fn, *a):
        common.timed(fn, *a)  # compiles
        return 1000 * float(np.median([common.timed(fn, *a)[1] for _ in range(args.repeats)]))

    key = jax.random.key(0)
    b = args.batch
    cases = []  # (network, what, fn(variables, input), variables, input)
    for name, shape in (("MNIST", (28, 28, 1)), ("CIFAR-10", (32, 32, 3))):
        config = defensegan.DefenseGANConfig.for_images(shape)
        params = defensegan.init_params(key, config)
        z = jax.random.normal(key, (b, config.latent))
        x = jax.random.uniform(key, (b, *shape))
        generator, critic = config.generator(), DGCritic(config.width)

        def g_forward(v, z, generator=generator):
            return generator.apply(v, z)

        def critic_penalty(c, x, critic=critic):
            def penalty(c):
                score = lambda u: critic.apply({"params": c}, u)  # noqa: E731
                return defensegan.gradient_penalty(score, x, 1.0 - x, jax.random.key(1))

            return jax.grad(penalty)(c)

        cases += [
            (f"Defense-GAN G, {name}", "forward", g_forward, params["generator"], z),
            (f"Defense-GAN G, {name}", "gradient in z",
             lambda v, z, f=g_forward: jax.grad(lambda u: f(v, u).sum())(z),
             params["generator"], z),
            (f"Defense-GAN critic, {name}", "gradient in x",
             lambda v, x, c=critic: jax.grad(lambda u: c.apply(v, u).sum())(x),
             params["critic"], x),
            (f"Defense-GAN critic, {name}", "penalty's gradient in the parameters",
             critic_penalty, params["critic"]["params"], x),
        ]  # fmt: skip

    rows = []
    for network, what, fn, first, second in cases:
        timings, outputs = {}, {}
        for impl in ("flax", "remix_jax"):
            with flax_layers() if impl == "flax" else contextlib.nullcontext():
                # a new function each time: jit caches its traces by function
                jitted = jax.jit(lambda a, b, fn=fn: fn(a, b))
                timings[impl] = median_ms(jitted, first, second)
            outputs[impl] = jax.tree.leaves(jitted(first, second))
        difference = max(
            float(jnp.abs(a - c).max())
            for a, c in zip(outputs["flax"], outputs["remix_jax"], strict=True)
        )
        row = {
            "network": network,
            "what": what,
            "flax_ms": round(timings["flax"], 1),
            "remix_jax_ms": round(timings["remix_jax"], 1),
            "speedup": round(timings["flax"] / timings["remix_jax"], 2),
            "max_abs_difference": difference,
        }
        print(row, flush=True)
        rows.append(row)
    payload = {"batch": b, "repeats": args.repeats, "rows": rows, **provenance.stamp()}
    common.write_json(out, payload)
    result_files.write_text(out.removesuffix(".json") + ".md", markdown(payload))
    print(f"-> {out}")


def markdown(payload: dict) -> str:
    lines = [
        "# Strided and transposed convolutions: Flax's vs remix_jax.models.layers",
        "",
        f"Batch {payload['batch']}, median of {payload['repeats']} jitted calls after one "
        "(compilation); the same weights both ways.",
        "",
        "| network | what | Flax ms | remix_jax ms | speed-up | max abs difference |",
        "|---|---|---|---|---|---|",
    ]
    for r in payload["rows"]:
        lines.append(
            f"| {r['network']} | {r['what']} | {r['flax_ms']} | {r['remix_jax_ms']} | "
            f"{r['speedup']}x | {r['max_abs_difference']:.1e} |"
        )
    lines += ["", f"Command: `{payload['command']}`", "", f"Machine: {payload['machine']}", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
