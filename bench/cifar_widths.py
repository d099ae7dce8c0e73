"""What each CIFAR-10 ResNet width costs: ``python -m bench.cifar_widths``.

The CIFAR-10 classifier's width trades accuracy against the price of everything
downstream: every attack iteration runs its forward and backward pass on every
image. For each width this times, on random images (cost does not depend on the
pixels), (a) one training step of train.classifier's recipe (batch 512, BatchNorm in
training mode, Nesterov SGD) scaled to an epoch of 45,000 images, and (b) the
gradient of the logits w.r.t. the input in inference mode (what a CW/EAD iteration
pays per image). Writes results/bench/cifar_widths_<platform>.json. The accuracy of
the shipped width comes from its checkpoint's meta.json.
"""

from __future__ import annotations

import argparse

from bench import common
from remix_jax.cli import HelpFormatter, positive_int

OUT = "results/bench/cifar_widths_<backend>.json"  # the default --out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    p.add_argument(
        "--widths", type=positive_int, nargs="+", default=[16, 24, 32], help="ResNet-9 widths timed"
    )
    p.add_argument("--batch-size", type=positive_int, default=512, help="training batch")
    p.add_argument("--attack-batch", type=positive_int, default=500, help="input-gradient batch")
    p.add_argument("--repeats", type=positive_int, default=5, help="timed runs (best kept)")
    common.add_out_flag(p, OUT)
    args = p.parse_args(argv)
    common.configure()
    out = common.result_path(args.out, OUT)
    from remix_jax import provenance

    rows = []
    for width in args.widths:
        rows.append(measure(width, args))
        print(rows[-1], flush=True)
    common.write_json(out, {"rows": rows, "settings": vars(args), **provenance.stamp()})
    print(f"-> {out}")


def measure(width: int, args) -> dict:
    """Training-step and attack-gradient time of the ResNet of one width."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    from remix_jax import objectives
    from remix_jax.models.classifiers import CIFARResNet

    model = CIFARResNet(width=width)
    task = objectives.classifier_task(model, (32, 32, 3), augment=True, label_smoothing=0.2)
    variables = task.init(jax.random.key(0))
    optimizer = optax.sgd(0.1, momentum=0.9, nesterov=True)
    opt_state = optimizer.init(variables["params"])

    @jax.jit
    def train_step(variables, opt_state, key, images, labels):
        def loss(trainable):
            return task.loss({**variables, "params": trainable}, key, images, labels)

        (value, metrics), grads = jax.value_and_grad(loss, has_aux=True)(variables["params"])
        updates, opt_state = optimizer.update(grads, opt_state)
        trainable = optax.apply_updates(variables["params"], updates)
        return {**metrics.pop("model_state"), "params": trainable}, opt_state, value

    @jax.jit
    def input_gradient(variables, x):
        return jax.grad(lambda x: model.apply(variables, x).max(-1).sum())(x)

    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.integers(0, 256, (args.batch_size, 32, 32, 3), dtype=np.uint8))
    labels = jnp.asarray(rng.integers(0, 10, args.batch_size, dtype=np.int32))
    x = jnp.asarray(rng.uniform(size=(args.attack_batch, 32, 32, 3)).astype(np.float32))
    common.timed(train_step, variables, opt_state, jax.random.key(0), images, labels)  # compile
    common.timed(input_gradient, variables, x)
    train = min(
        common.timed(train_step, variables, opt_state, jax.random.key(i), images, labels)[1]
        for i in range(args.repeats)
    )
    grad = min(common.timed(input_gradient, variables, x)[1] for _ in range(args.repeats))
    return {
        "width": width,
        "params": objectives.param_count(variables["params"]),
        "train_step_seconds": round(train, 4),
        "epoch_seconds_45k": round(train * 45000 / args.batch_size, 1),
        "attack_gradient_ms_per_image": round(grad * 1000 / args.attack_batch, 3),
    }


if __name__ == "__main__":
    main()
