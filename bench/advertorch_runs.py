"""advertorch 0.2.3 on the torch port of our classifier, for :mod:`bench.reference_attacks`.

advertorch gets a torch port of the Flax weights (:mod:`bench.torch_ports`; CIFAR-10:
BatchNorm in inference mode with the stored running statistics), checked to give the
same logits within ``PORT_TOLERANCE`` first; Foolbox's PyTorchModel runs on the same
port (``foolboxtorch-*``).
"""

from __future__ import annotations

import sys

PORT_TOLERANCE = 1e-4  # max |logit difference| allowed between the Flax and torch models


def import_advertorch():
    """advertorch 0.2.3 (installed with --no-deps) with a current torch.

    Its package __init__ imports everything, so two shims go in before the import,
    neither touching the CW or EAD code:
      * ``torch.autograd.gradcheck.zero_gradients`` (removed in torch 1.9), used only
        by its FAB attack;
      * a stand-in ``torchvision`` when none imports (the PyPI torchvision wheel is a
        CUDA build that cannot load beside the CPU torch here), used only by its JPEG
        defense, which builds ``transforms.ToPILImage()`` / ``ToTensor()`` at import.
    """
    import importlib
    import types

    try:
        import torchvision  # noqa: F401
    except Exception:  # noqa: BLE001 - missing, or a wheel that cannot load

        class _Unavailable:
            def __call__(self, *args, **kwargs):
                raise RuntimeError("torchvision stand-in: not available in this bench")

        stub = types.ModuleType("torchvision")
        stub.transforms = types.SimpleNamespace(ToPILImage=_Unavailable, ToTensor=_Unavailable)
        sys.modules["torchvision"] = stub

    # sys.modules' entry: the attribute torch.autograd.gradcheck is the function
    gradcheck = importlib.import_module("torch.autograd.gradcheck")
    if not hasattr(gradcheck, "zero_gradients"):

        def zero_gradients(x):
            if isinstance(x, __import__("torch").Tensor):
                if x.grad is not None:
                    x.grad.detach_()
                    x.grad.zero_()
            else:
                for elem in x:
                    zero_gradients(elem)

        gradcheck.zero_gradients = zero_gradients
    import advertorch.attacks

    return advertorch.attacks


def torch_side(pre, logits_fn, x):
    """(advertorch.attacks, the torch port of ``pre``'s classifier, the port's check).

    The port must give ``logits_fn``'s logits within ``PORT_TOLERANCE`` on the (N, H, W,
    C) attack images ``x`` and as many uniform-noise images, or the bench exits
    (:func:`bench.torch_ports.checked_port`).
    """
    from bench.torch_ports import checked_port

    at = import_advertorch()
    net, port = checked_port(pre, logits_fn, x, PORT_TOLERANCE)
    return at, net, port


def run(at, net, x, y, kappa, which, args):
    """advertorch's CW / EAD on the torch port ``net`` (abort_early passed, as to all)."""
    import numpy as np
    import torch

    kw = dict(
        num_classes=10,
        confidence=kappa,
        targeted=False,
        learning_rate=args.learning_rate,
        binary_search_steps=args.binary_search_steps,
        max_iterations=args.max_iterations,
        abort_early=args.abort_early,
        initial_const=args.initial_const,
        clip_min=0.0,
        clip_max=1.0,
    )
    if which == "cw":
        attack = at.CarliniWagnerL2Attack(net, **kw)
    else:
        attack = at.ElasticNetL1Attack(net, beta=args.beta, decision_rule=args.decision_rule, **kw)
    adv = attack.perturb(torch.from_numpy(x.copy()), torch.from_numpy(y.astype(np.int64)))
    return adv.detach().numpy().astype(np.float32)
