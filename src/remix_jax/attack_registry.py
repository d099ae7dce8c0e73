"""The attack registry (beside, not inside, :mod:`remix_jax.attacks`, whose package imports
JAX): the CLIs dispatch through it, so a new attack is one file plus
one :func:`register` call, and no command branches on attack names.

Each entry names the attack's function as ``"module:function"`` (resolved on first
use, so the registry imports no JAX and every ``--help`` stays instant), its kind of
budget, and the hyperparameters of its own that the CLIs pass through by name.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable

from remix_jax._registry import Registry

BUDGETS = ("confidence", "epsilon")

# Budgets of the binary-search attacks (CW, EAD) that the sweep and the readers of its
# caches name with --preset.
PRESETS = {
    # the reference implementations' defaults (Carlini's l2_attack.py, EAD's en_attack.py)
    "paper": {"binary_search_steps": 9, "max_iterations": 10_000},
    # on 100 MNIST images, at kappa 0 and 20, 9 x 1000 reached the success of
    # 9 x 10000 (100%) with CW's mean L2 within 0.3% and EAD's mean L1 within 5%
    # (L2 within 2%): results/bench/attacks_convergence_gpu.json
    "cpu": {"binary_search_steps": 9, "max_iterations": 1000},
}


@dataclasses.dataclass(frozen=True)
class AttackSpec:
    """One registered attack.

    Attributes:
      name: the ``--attack`` value.
      function: ``"package.module:function"``; the function is called as
        ``fn(logits_fn, x, labels, **settings)`` and returns an
        :class:`~remix_jax.attacks.common.AttackResult`; with ``key=`` a randomized
        ``logits_fn(x, key)``.
      budget: "confidence": a minimum-distortion attack swept over the confidence kappa
        (Fig. 2; CW, EAD); "epsilon": an attack bounded to a norm ball (PGD).
      hyperparameters: settings of this attack alone that a CLI passes through from
        its flags of the same name (EAD: beta, decision_rule).
      randomized_key: how a randomized model's key reaches it: "key" (``key=k``; the
        binary-search attacks) or "stochastic" (``key=k, stochastic=True``; PGD).
    """

    name: str
    function: str
    budget: str
    hyperparameters: tuple[str, ...] = ()
    randomized_key: str = "key"

    def __post_init__(self):
        if self.budget not in BUDGETS:
            raise ValueError(f"budget must be one of {BUDGETS}, got {self.budget!r}")
        if ":" not in self.function:
            raise ValueError(f"function must be 'module:function', got {self.function!r}")

    def resolve(self) -> Callable:
        """The attack function itself."""
        module, _, name = self.function.partition(":")
        return getattr(importlib.import_module(module), name)

    def randomized(self, key) -> dict:
        """The keyword arguments that make the attack call a model as ``fn(x, key)``."""
        return {"key": key, **({"stochastic": True} if self.randomized_key == "stochastic" else {})}

    def own_settings(self, source) -> dict:
        """This attack's own hyperparameters, read by name from ``source`` (e.g. the
        parsed CLI arguments); those ``source`` lacks keep the attack's defaults."""
        return {h: getattr(source, h) for h in self.hyperparameters if hasattr(source, h)}


_REGISTRY: Registry[AttackSpec] = Registry("attack", AttackSpec)


def register(spec: AttackSpec, *, replace: bool = False) -> AttackSpec:
    return _REGISTRY.add(spec, replace=replace)


def unregister(name: str) -> None:
    _REGISTRY.remove(name)


def get(name: str) -> AttackSpec:
    return _REGISTRY.get(name)


def search_settings(
    attack: str, preset: str, overrides, *, targeted: bool, initial_const: float | str = 1e-3
) -> dict:
    """A binary-search attack's settings as its cache records them: the ``preset``'s
    budget, overridden by ``overrides.binary_search_steps`` / ``.max_iterations`` where
    set, the attack's own hyperparameters read from ``overrides``, ``targeted``, and
    ``initial_const`` (a number or "linear") only where it departs from the references'
    1e-3 (so the caches crafted before it was a setting keep their identity)."""
    settings = dict(PRESETS[preset])
    for name in ("binary_search_steps", "max_iterations"):
        if getattr(overrides, name, None) is not None:
            settings[name] = getattr(overrides, name)
    settings.update(get(attack).own_settings(overrides))
    settings["targeted"] = targeted
    if initial_const != 1e-3:
        settings["initial_const"] = initial_const
    return settings


def names(budget: str | None = None) -> list[str]:
    """Registered attacks (of one budget kind if given), in registration order."""
    return [n for n in _REGISTRY.names() if budget is None or get(n).budget == budget]


register(AttackSpec("cw", "remix_jax.attacks.cw:cw_l2", "confidence"))
register(
    AttackSpec(
        "ead", "remix_jax.attacks.ead:ead", "confidence", hyperparameters=("beta", "decision_rule")
    )
)
register(AttackSpec("pgd", "remix_jax.attacks.pgd:pgd", "epsilon", randomized_key="stochastic"))
# APGD (Croce & Hein 2020): eval.adaptive passes it pgd's arguments (steps, norm, loss
# "ce" or "margin", start, penalty); its own (restarts, draws, "dlr" losses) keep defaults
register(AttackSpec("apgd", "remix_jax.attacks.apgd:apgd", "epsilon", randomized_key="stochastic"))
