"""Foolbox 3.3.4's CW / EAD, for :mod:`bench.reference_attacks` (:mod:`bench.reference_runs`).

``foolbox-*`` runs on a JAXModel of our classifier's function; ``foolboxtorch-*`` on a
PyTorchModel of the torch port (:mod:`bench.advertorch_runs`): the same attack code on
advertorch's network.
"""

from __future__ import annotations


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
