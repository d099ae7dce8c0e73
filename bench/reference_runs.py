"""The implementations :mod:`bench.reference_attacks` runs: ours, Foolbox, advertorch.

Each runner takes kappa and returns the (N, H, W, C) float32 numpy images the
implementation returned, for :func:`remix_jax.attack_quality.judge`. The references run
the whole batch at once (their usual use; :mod:`bench.foolbox_runs`,
:mod:`bench.advertorch_runs`); advertorch and ``foolboxtorch-*`` run on the torch port
of :mod:`bench.advertorch_runs`.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys

from bench import advertorch_runs
from remix_jax.cli import attack_iterations, search_steps

IMPLEMENTATIONS = (
    "ours-cw",
    "foolbox-cw",
    "advertorch-cw",
    "foolboxtorch-cw",
    "ours-ead",
    "foolbox-ead",
    "advertorch-ead",
    "foolboxtorch-ead",
)
PACKAGES = (
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "numpy",
    "foolbox",
    "eagerpy",
    "scipy",
    "torch",
    "advertorch",
)


# --ours-budgets suffixes: our algorithmic options, each off by default.
OPTIONS = {"warm": {"warm_start": True}, "linear": {"initial_const": "linear"}}


def budget(text: str) -> tuple[int, int, tuple[str, ...]]:
    """``"5x500"`` -> (5, 500, ()), our search steps x iterations, and with suffixes
    our options: ``"5x500+warm+linear"`` -> (5, 500, ("warm", "linear")), i.e.
    ``warm_start=True`` and ``initial_const="linear"``; ``+lr0.03`` sets its own
    learning rate (the type of
    ``--ours-budgets``, whose runs :func:`runners` names ``ours-cw@5x500+warm+linear``)."""
    size, *options = text.split("+")
    steps, sep, iterations = size.partition("x")
    unknown = [o for o in options if o not in OPTIONS and _learning_rate(o) is None]
    if not sep or unknown:
        raise argparse.ArgumentTypeError(
            f"expected STEPSxITERATIONS like 5x500, optionally followed by "
            f"{' '.join('+' + o for o in OPTIONS)} +lr<RATE>, got {text!r}"
        )
    return search_steps(steps), attack_iterations(iterations), tuple(options)


def _learning_rate(option: str) -> float | None:
    """``"lr0.03"`` -> 0.03 (a budget's own learning rate); None if not such an option."""
    try:
        rate = float(option.removeprefix("lr")) if option.startswith("lr") else None
    except ValueError:
        return None
    return rate if rate is not None and 0 < rate < float("inf") else None


def option_settings(options: tuple[str, ...]) -> dict:
    """The keyword arguments of our attack that a budget's options name."""
    out = {}
    for option in options:
        rate = _learning_rate(option)
        out.update({"learning_rate": rate} if rate is not None else OPTIONS[option])
    return out


def available(package: str) -> bool:
    """Whether ``package`` is installed in this interpreter."""
    try:
        importlib.metadata.version(package)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def versions(packages: tuple[str, ...] = PACKAGES) -> dict:
    """This interpreter and the version of each of ``packages`` (None: not installed)."""
    out = {"python": sys.version.split()[0], "executable": sys.executable}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def choose(requested: list[str] | None) -> list[str]:
    """The implementations to run: ``requested``, or by default ours and every reference
    whose package is installed (not ``foolboxtorch-*``); exits if a package is missing."""
    if requested is None:
        requested = [
            i
            for i in IMPLEMENTATIONS
            if not i.startswith("foolboxtorch")
            and (i.startswith("ours") or available(i.split("-")[0]))
        ]
    for package in ("foolbox", "advertorch"):
        if any(i.startswith(package) for i in requested) and not available(package):
            sys.exit(
                f"error: {package} is not installed in this interpreter "
                "(install it in a separate venv, see --help)"
            )
    return requested


def search_settings(args) -> dict:
    """The search budget and step sizes every implementation gets, from the flags."""
    return dict(
        binary_search_steps=args.binary_search_steps,
        max_iterations=args.max_iterations,
        learning_rate=args.learning_rate,
        initial_const=args.initial_const,
    )


def settings(args, num_examples: int) -> dict:
    """The settings a result records, from the flags and the number of images."""
    return {
        **search_settings(args),
        "beta": args.beta,
        "decision_rule": args.decision_rule,
        "abort_early": args.abort_early,
        "targeted": False,
        "dataset": args.dataset,
        "ours_warm": args.warm,
        "num_examples": num_examples,
        "confidences": args.confidences,
    }


def run_ours(which, logits_fn, x, y, kappa, args, **budget):
    """Our ``cw_l2`` / ``ead`` (``which``) at the flags' settings; ``budget`` overrides
    them (binary_search_steps, max_iterations, warm_start, initial_const)."""
    import jax
    import numpy as np

    from remix_jax.attacks import cw_l2, ead

    attack, own = (
        (cw_l2, {})
        if which == "cw"
        else (ead, {"beta": args.beta, "decision_rule": args.decision_rule})
    )
    r = attack(
        logits_fn,
        x,
        y,
        confidence=kappa,
        abort_early=args.abort_early,
        **own,
        **{**search_settings(args), **budget},
    )
    return np.asarray(jax.block_until_ready(r.adversarial))


def runners(args, pre, logits_fn, x, y):
    """({run name: function of kappa -> adversarial images}, the run names in order, the
    torch port's check or None).

    The names are ``args.implementations``, each of ours followed by its other
    ``args.ours_budgets`` ((steps, iterations, option names) triples, see
    :func:`budget`), named ``ours-cw@5x500`` or ``ours-cw@5x500+warm``. Foolbox
    is imported, and advertorch with the checked torch port
    (:func:`bench.advertorch_runs.torch_side`) built, only where a run needs them.
    """
    from bench.foolbox_runs import run_foolbox

    fb, at, net, port = None, None, None, None
    if any(i.startswith("foolbox") for i in args.implementations):
        import foolbox as fb
    if any(i.startswith(("advertorch", "foolboxtorch")) for i in args.implementations):
        at, net, port = advertorch_runs.torch_side(pre, logits_fn, x)
    out = {
        "ours-cw": lambda k, **b: run_ours("cw", pre.logits_fn, x, y, k, args, **b),
        "ours-ead": lambda k, **b: run_ours("ead", pre.logits_fn, x, y, k, args, **b),
        "foolbox-cw": lambda k: run_foolbox(fb, logits_fn, net, x, y, k, "cw", args),
        "foolbox-ead": lambda k: run_foolbox(fb, logits_fn, net, x, y, k, "ead", args),
        "advertorch-cw": lambda k: advertorch_runs.run(at, net, x, y, k, "cw", args),
        "advertorch-ead": lambda k: advertorch_runs.run(at, net, x, y, k, "ead", args),
        "foolboxtorch-cw": lambda k: run_foolbox(fb, logits_fn, net, x, y, k, "cw", args, True),
        "foolboxtorch-ead": lambda k: run_foolbox(fb, logits_fn, net, x, y, k, "ead", args, True),
    }
    implementations = []
    for impl in args.implementations:
        implementations.append(impl)
        for steps, iterations, options in args.ours_budgets if impl.startswith("ours-") else ():
            name = f"{impl}@{steps}x{iterations}" + "".join("+" + o for o in options)
            chosen = option_settings(options)
            out[name] = lambda k, run=out[impl], s=steps, i=iterations, c=chosen: run(
                k, binary_search_steps=s, max_iterations=i, **c
            )
            implementations.append(name)
    return out, implementations, port
