"""Attack a classifier with CW-L2, defend it with REMIX (default: MNIST): ``python -m eval.demo``.

Crafts CW-L2 adversarial examples on the bare classifier (the paper's oblivious
setting; --dataset and --classifier pick another dataset's or your own) for the first
--num-examples test images it classifies correctly, then
reports the accuracy on them of: no defense, REMIX's reformer, MagNet (reformer only,
and detectors + reformer), REMIX mask-inpaint, and REMIX reformer + mask-inpaint. A
quick look, not the paper's sweep (eval.sweep).
"""

from __future__ import annotations

import time

from remix_jax import cli


def main(argv=None) -> None:
    p = cli.parser(__doc__)
    cli.add_dataset_flag(p)
    cli.add_classifier_flag(p)
    p.add_argument(
        "--num-examples", type=cli.positive_int, default=100, help="test images attacked"
    )
    p.add_argument("--confidence", type=cli.nonnegative_float, default=0.0, help="CW's kappa")
    cli.add_seed_flag(p)
    cli.add_search_attack_flags(p, initial_const=1.0, budget=(3, 1000), ead=False)
    cli.add_source_flags(p)
    args = p.parse_args(argv)

    from remix_jax import runtime

    runtime.configure()
    import numpy as np

    from remix_jax import components, data, evaluation, keys
    from remix_jax.attacks import cw_l2
    from remix_jax.pretrained import load_magnet, load_pretrained

    with cli.exit_on_load_errors():  # prints nothing to a file: no --out needed
        pre = load_pretrained(args.dataset, args.checkpoint_root, classifier=args.classifier)
        images, labels = data.load(args.dataset, "test", args.data_dir)
    x = data.to_float(images[: 4 * args.num_examples])
    right = evaluation.predict(pre.logits_fn, x) == labels[: len(x)]
    x, y = x[right][: args.num_examples], labels[: len(x)][right][: args.num_examples]
    print(
        f"CW-L2 (kappa={args.confidence}, {args.binary_search_steps} x "
        f"{args.max_iterations} iterations) on {len(x)} correctly classified test images ..."
    )
    started = time.time()
    result = cw_l2(
        pre.logits_fn,
        x,
        y,
        confidence=args.confidence,
        binary_search_steps=args.binary_search_steps,
        max_iterations=args.max_iterations,
        initial_const=args.initial_const,
    )
    adv = np.asarray(result.adversarial)
    success = np.asarray(result.success)
    mean_l2 = (
        f"mean L2 {np.asarray(result.l2)[success].mean():.3f}"
        if success.any()
        else "no example found, so no mean L2"
    )
    print(f"  {time.time() - started:.0f} s; success {success.mean():.1%}, {mean_l2}")
    try:
        magnet = load_magnet(args.dataset, args.checkpoint_root)
    except FileNotFoundError:
        magnet = None
        print("  (MagNet checkpoints not found: its rows are left out)")
    suite = evaluation.defense_suite(
        pre.logits_fn, pre.remix, magnet, components.magnet_official_names(args.dataset)
    )
    print(
        f"accuracy on the {len(x)} adversarial images (failed attacks left as clean; "
        "MagNet: rejected counts as defended):"
    )
    evaluation_key = keys.evaluation_keys(args.seed, 1)[0]
    for name, defense in suite.items():
        right = defense.correct(evaluation_key, adv, y, True)
        print(f"  {name:32s} {np.mean(right):6.1%}")


if __name__ == "__main__":
    main()
