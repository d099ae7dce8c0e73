"""The implementations :mod:`bench.reference_attacks` runs: ours, Foolbox, advertorch.

Each runner takes kappa and returns the (N, H, W, C) float32 numpy images the
implementation returned, for :func:`remix_jax.attack_quality.judge`. The references run
the whole batch at once (their usual use); advertorch and ``foolboxtorch-*`` run on the
torch port of :mod:`bench.advertorch_runs`.
"""

from __future__ import annotations

import importlib.metadata
import sys

from bench import advertorch_runs

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


def run_ours(which, logits_fn, x, y, kappa, args, **budget):
    """Our ``cw_l2`` / ``ead`` (``which``) at the flags' settings; ``budget`` overrides
    binary_search_steps / max_iterations."""
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


def run_foolbox(fb, logits_fn, net, x, y, kappa, which, args, on_torch=False):
    """Foolbox's CW / EAD on a JAXModel of ``logits_fn``, or (``on_torch``) on a
    PyTorchModel of the torch port ``net``."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    model = (
        fb.PyTorchModel(net.eval(), bounds=(0, 1))
        if on_torch
        else fb.JAXModel(logits_fn, bounds=(0, 1))
    )
    shared = dict(
        binary_search_steps=args.binary_search_steps,
        steps=args.max_iterations,
        confidence=kappa,
        initial_const=args.initial_const,
        abort_early=args.abort_early,
    )
    if which == "cw":
        attack = fb.attacks.L2CarliniWagnerAttack(stepsize=args.learning_rate, **shared)
    else:
        attack = fb.attacks.EADAttack(
            initial_stepsize=args.learning_rate,
            regularization=args.beta,
            decision_rule=args.decision_rule,
            **shared,
        )
    if on_torch:
        import torch

        adv = attack.run(
            model,
            torch.from_numpy(x.copy()),
            fb.criteria.Misclassification(torch.from_numpy(y.astype(np.int64))),
        )
        return adv.detach().numpy().astype(np.float32)
    adv = attack.run(model, jnp.asarray(x), fb.criteria.Misclassification(jnp.asarray(y)))
    return np.asarray(jax.block_until_ready(adv))


def runners(args, pre, logits_fn, x, y, budgets, fb=None, at=None, net=None):
    """({run name: function of kappa -> adversarial images}, the run names in order).

    ``fb``: the foolbox module; ``at``, ``net``: :func:`bench.advertorch_runs.torch_side`'s.
    The names are ``args.implementations``, each of ours followed by its smaller
    ``budgets`` ((steps, iterations) pairs), named ``ours-cw@5x500``.
    """
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
    implementations = list(args.implementations)
    for steps, iterations in budgets:
        for impl in args.implementations:
            if impl.startswith("ours-"):
                name = f"{impl}@{steps}x{iterations}"
                out[name] = lambda k, run=out[impl], s=steps, i=iterations: run(
                    k, binary_search_steps=s, max_iterations=i
                )
                implementations.insert(implementations.index(impl) + 1, name)
    return out, implementations
