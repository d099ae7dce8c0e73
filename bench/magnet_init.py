"""Why MagNet's autoencoders start from Glorot-uniform: ``python -m bench.magnet_init``.

Trains MagNet's MNIST AE-I (all-sigmoid, [3, average, 3]) as train.magnet does (noise
0.1, Adam 1e-3, batch 256) for --steps steps from Flax's default kernel initialiser
(LeCun-normal) and from Keras's (Glorot-uniform, what MagNet's code used), and
records the training loss every --every steps. With the default the net sits on the
predict-the-mean plateau (MSE ~0.1) far longer. Writes results/bench/magnet_init_<platform>.json.
"""

from __future__ import annotations

import argparse

from bench import common
from remix_jax.cli import DATA_DIR_HELP, HelpFormatter, positive_int, seed

OUT = "results/bench/magnet_init_<backend>.json"  # the default --out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    p.add_argument(
        "--steps", type=positive_int, default=1500, help="training steps per initialiser"
    )
    p.add_argument("--every", type=positive_int, default=250, help="validation loss every N steps")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    common.add_out_flag(p, OUT)
    args = p.parse_args(argv)
    common.configure()
    out = common.result_path(args.out, OUT)
    import dataclasses

    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    from remix_jax import components, data, provenance
    from remix_jax.models import magnet as magnet_models

    images, _ = data.load("mnist", "train", args.data_dir)
    x = data.to_float(images[:-5000])  # the training part train.magnet uses
    config = components.magnet_autoencoder("mnist", "I")
    curves = {}
    for init in ("lecun_normal", "glorot_uniform"):
        name = f"{init} ({'Flax default' if init == 'lecun_normal' else 'Keras, MagNet'})"
        model = magnet_models.MagNetAutoencoder(dataclasses.replace(config, kernel_init=init))
        params = model.init(jax.random.key(args.seed), x[:1])["params"]
        optimizer = optax.adam(1e-3)
        state = optimizer.init(params)

        @jax.jit
        def step(params, state, batch, key, model=model, optimizer=optimizer):
            noisy = jnp.clip(batch + 0.1 * jax.random.normal(key, batch.shape), 0, 1)

            def loss(p):
                return jnp.mean((model.apply({"params": p}, noisy) - batch) ** 2)

            value, grads = jax.value_and_grad(loss)(params)
            updates, state = optimizer.update(grads, state, params)
            return optax.apply_updates(params, updates), state, value

        rng = np.random.default_rng(args.seed)
        curve = []
        for i in range(args.steps):
            batch = x[rng.integers(0, len(x), 256)]
            params, state, value = step(params, state, batch, jax.random.key(i))
            if i % args.every == 0 or i == args.steps - 1:
                curve.append({"step": i, "mse": float(value)})
                print(f"{name}: step {i} mse {float(value):.4f}", flush=True)
        curves[name] = curve
    common.write_json(out, {"curves": curves, **provenance.stamp()})
    print(f"-> {out}")


if __name__ == "__main__":
    main()
