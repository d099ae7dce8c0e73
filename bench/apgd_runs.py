"""The APGD implementations :mod:`bench.apgd_reference` runs: ours and the references.

Each runner takes the (N, H, W, C) float32 images, the (N,) labels, the loss ("ce" or
"dlr"), epsilon, the number of steps and the seed, and returns the images the
implementation returned (numpy float32, same shape) and, per image, whether the
implementation's own network still classifies it correctly. The references run on the
torch port of our classifier (:func:`bench.torch_ports.checked_port`), L-inf, one
restart, no EOT, rho 0.75, the whole batch at once:

  ours          remix_jax.attacks.apgd (the JAX classifier)
  torchattacks  torchattacks.APGD (3.5.1), its port of fra31/auto-attack
  art           art.attacks.evasion.AutoProjectedGradientDescent (1.20), with
                eps_step = 2 * eps (the official first step size; ART's default is
                0.1) and batch_size = N
  official      autoattack.autopgd_base.APGDAttack of fra31/auto-attack itself, from a
                checkout given by --official-path (not on the package registry)
"""

from __future__ import annotations

import hashlib
import os
import sys

from bench import reference_runs
from bench.reference_runs import available

WHO = ("ours", "torchattacks", "art", "official")
LOSSES = ("ce", "dlr")
IMPLEMENTATIONS = tuple(f"{who}-{loss}" for loss in LOSSES for who in WHO)
# the distribution each reference comes from (official: a checkout, see official_source)
PACKAGES = {"torchattacks": "torchattacks", "art": "adversarial-robustness-toolbox"}
VERSIONS = ("jax", "jaxlib", "flax", "numpy", "scipy", "torch", *PACKAGES.values(), "scikit-learn")


def choose(requested: list[str] | None, official_path: str | None) -> list[str]:
    """The runs, in the order they run (ours first per loss): ``requested``, or ours and
    every reference that is installed (official: when ``official_path`` is given).
    Exits naming what is missing."""
    if requested is None:
        requested = [
            i
            for i in IMPLEMENTATIONS
            if i.startswith("ours")
            or (i.startswith("official") and official_path)
            or PACKAGES.get(i.split("-")[0]) is not None
            and available(PACKAGES[i.split("-")[0]])
        ]
    for who, package in PACKAGES.items():
        if any(i.startswith(who) for i in requested) and not available(package):
            sys.exit(
                f"error: {package} is not installed in this interpreter "
                "(install it in the reference venv, see --help)"
            )
    if any(i.startswith("official") for i in requested) and not official_path:
        sys.exit("error: the official-* runs need --official-path (a fra31/auto-attack checkout)")
    return [i for i in IMPLEMENTATIONS if i in requested]


def official_source(path: str) -> dict:
    """Puts the fra31/auto-attack checkout at ``path`` on sys.path; returns what it is:
    the path and the SHA-256 of its ``autoattack/autopgd_base.py``."""
    code = os.path.join(path, "autoattack", "autopgd_base.py")
    if not os.path.isfile(code):
        sys.exit(f"error: --official-path {path!r} has no autoattack/autopgd_base.py")
    with open(code, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    if path not in sys.path:
        sys.path.insert(0, path)
    return {"path": os.path.abspath(path), "autopgd_base_sha256": digest}


def versions() -> dict:
    """This interpreter and the version of each of ``VERSIONS`` (None: not installed)."""
    return reference_runs.versions(VERSIONS)


def _torch_verdict(net, adv):
    """(N,) argmax of the torch port on ``adv`` (numpy)."""
    import numpy as np
    import torch

    with torch.no_grad():
        parts = [net(torch.from_numpy(adv[s : s + 500])) for s in range(0, len(adv), 500)]
    return np.concatenate([p.argmax(-1).numpy() for p in parts])


def run_ours(logits_fn, x, y, loss, epsilon, steps, seed):
    """Our APGD on the JAX classifier; its own verdict is its ``success`` flag."""
    import jax
    import numpy as np

    from remix_jax.attacks.apgd import apgd

    r = apgd(
        logits_fn,
        x,
        y,
        key=jax.random.key(seed),
        epsilon=epsilon,
        norm="linf",
        steps=steps,
        loss=loss,
        restarts=1,
        rho=0.75,
    )
    adv, success = jax.block_until_ready((r.adversarial, r.success))
    return np.asarray(adv, np.float32), ~np.asarray(success)


def run_torchattacks(net, x, y, loss, epsilon, steps, seed):
    """torchattacks.APGD on the torch port."""
    import numpy as np
    import torch
    import torchattacks

    attack = torchattacks.APGD(
        net,
        norm="Linf",
        eps=epsilon,
        steps=steps,
        n_restarts=1,
        seed=seed,
        loss=loss,
        eot_iter=1,
        rho=0.75,
    )
    adv = attack(torch.from_numpy(x.copy()), torch.from_numpy(y.astype(np.int64)))
    adv = adv.detach().numpy().astype(np.float32)
    return adv, _torch_verdict(net, adv) == y


def run_official(net, x, y, loss, epsilon, steps, seed):
    """fra31/auto-attack's APGDAttack on the torch port (``official_source`` first)."""
    import numpy as np
    import torch
    from autoattack.autopgd_base import APGDAttack

    attack = APGDAttack(
        net,
        n_iter=steps,
        norm="Linf",
        n_restarts=1,
        eps=epsilon,
        seed=seed,
        loss=loss,
        eot_iter=1,
        rho=0.75,
        device="cpu",
    )
    adv = attack.perturb(torch.from_numpy(x.copy()), torch.from_numpy(y.astype(np.int64)))
    adv = adv.detach().numpy().astype(np.float32)
    return adv, _torch_verdict(net, adv) == y


def run_art(net, x, y, loss, epsilon, steps, seed, classes=10):
    """ART's AutoProjectedGradientDescent on a PyTorchClassifier of the torch port (NHWC,
    so channels_first=False), eps_step = 2 * eps, the whole batch at once."""
    import numpy as np
    import torch
    from art.attacks.evasion import AutoProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier

    classifier = PyTorchClassifier(
        model=net,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=tuple(x.shape[1:]),
        nb_classes=classes,
        clip_values=(0.0, 1.0),
        channels_first=False,
        device_type="cpu",
    )
    attack = AutoProjectedGradientDescent(
        classifier,
        norm=np.inf,
        eps=epsilon,
        eps_step=2 * epsilon,
        max_iter=steps,
        targeted=False,
        nb_random_init=1,
        batch_size=len(x),
        loss_type={"ce": "cross_entropy", "dlr": "difference_logits_ratio"}[loss],
        verbose=False,
    )
    np.random.seed(seed)  # ART draws its random start from numpy's global generator
    torch.manual_seed(seed)
    adv = attack.generate(x.copy(), y=y.astype(np.int64)).astype(np.float32)
    return adv, _torch_verdict(net, adv) == y


def runners(pre_logits_fn, net, classes: int) -> dict:
    """{who: runner(x, y, loss, epsilon, steps, seed) -> (adversarial, own_robust)}."""
    return {
        "ours": lambda *a: run_ours(pre_logits_fn, *a),
        "torchattacks": lambda *a: run_torchattacks(net, *a),
        "art": lambda *a: run_art(net, *a, classes=classes),
        "official": lambda *a: run_official(net, *a),
    }
