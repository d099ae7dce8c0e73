"""The robustness protocol: which attacks judge a defense at which budgets (JAX-free).

The field's protocol for a randomized defense is AutoAttack's ``version="rand"``
(Croce & Hein 2020; fra31/auto-attack): APGD-CE and APGD-DLR, each with EOT over R
draws per step and its random restarts. REMIX is judged by that and by this project's
portfolio of threats (PGD with the margin loss and EOT from a random start, from the
transfer example, with BPDA; :mod:`remix_jax.adaptive_plan`'s threats), and by the
transfer attacks themselves, whose examples are crafted on the bare classifier. The
bare classifier is judged by AutoAttack's standard APGD parts, APGD-CE and APGD-T
(targeted DLR over the 9 most likely other classes); the standard protocol's FAB-T and
Square are not implemented, so its bare numbers are upper bounds of AutoAttack's. A
deterministic defense (MagNet's reformer, APE-GAN's purifier) gets the same two parts
through it, with
exact gradients (group "standard"), beside the transfer attacks.

An image counts as robust at a budget, under an evaluation key, only if it survives
every attack there; the judgement is over ``num_keys`` keys the attacker never used.

Each attack of the protocol is a :class:`Part`: a one-run
:class:`~remix_jax.adaptive_plan.AdaptiveSetup` whose run is crafted and cached by
:class:`~remix_jax.adaptive_eval.AdaptiveEvaluation`, so the protocol's caches share
their layout, identities and attacker keys with ``eval.adaptive``'s (a run both plan
is crafted once).
"""

from __future__ import annotations

import dataclasses

from remix_jax import adaptive_plan
from remix_jax.adaptive_plan import AdaptiveSetup

DEFENSES = ("reformer + mask-inpaint", "mask-inpaint", *adaptive_plan.PURIFIERS, "none")
# the fixed-mask threat is a sanity check of eval.adaptive (it must succeed under the
# attacker's own key), not an attack a defense is judged by
PORTFOLIO = ("eot", "eot-warm", "bpda")
# the groups of attacks an image must survive (the others are checks)
WORST_CASE_GROUPS = ("bare", "rand", "standard", "portfolio")
# what the large-budget sanity check attacks with, per norm: ~0% must be left
LARGE_BUDGET = adaptive_plan.LARGE_BUDGET


@dataclasses.dataclass(frozen=True)
class RobustnessSetup:
    """One robustness evaluation's settings (``eval.robustness``'s flags of the same names).

    Attributes:
      dataset: registered name.
      norm: "linf" or "l2"; budgets: the epsilons judged.
      defense: of :data:`DEFENSES` ("none": the bare classifier alone).
      draws: R, EOT draws per APGD step (AutoAttack's ``eot_iter``; 20 in ``rand``).
      steps: APGD's (and the portfolio PGD's) steps; restarts: APGD's random restarts.
      portfolio: the PGD threats added to APGD (of :data:`PORTFOLIO`).
      portfolio_samples: EOT draws per step of the portfolio's PGD.
      num_keys: evaluation keys; iterations: REMIX's rounds K; seed: the run's seed
        (the attacker, the evaluation keys and the calibration, by purpose: remix_jax.keys).
      sanity: add the checks of Carlini et al. (2019) at ``sanity_budget`` (default:
        the middle budget) and ``large_budget`` (default linf 0.5, l2 8).
      classifier: the attacked classifier when not the dataset's shipped one.
    """

    dataset: str
    norm: str
    budgets: tuple[float, ...]
    defense: str = "reformer + mask-inpaint"
    draws: int = 20
    steps: int = 100
    restarts: int = 1
    portfolio: tuple[str, ...] = ("eot", "eot-warm", "bpda")
    portfolio_samples: int = 4
    num_keys: int = 10
    iterations: int = 1
    seed: int = 0
    sanity: bool = True
    sanity_budget: float | None = None
    large_budget: float | None = None
    classifier: str | None = None

    @property
    def randomized(self) -> bool:
        """Whether the judged defense draws masks (every REMIX variant)."""
        return self.defense in adaptive_plan.DEFENSES

    @property
    def judged(self) -> list[str]:
        """The models judged: the bare classifier ("none"), and the defense if another."""
        return ["none"] + ([self.defense] if self.defense != "none" else [])

    def checked_budget(self) -> float:
        """The budget of the draws / steps sanity checks."""
        return self.sanity_budget or self.budgets[len(self.budgets) // 2]


@dataclasses.dataclass(frozen=True)
class Part:
    """One attack of the protocol.

    Attributes:
      label: the table's name of the attack ("APGD-CE, EOT-20").
      group: "bare" (crafted on the bare classifier: judges it, and transfers to the
        defense), "rand" (AutoAttack's rand protocol on a randomized defense),
        "standard" (its standard APGD parts on a deterministic one), "portfolio"
        (this project's threats), "sanity" (a check, not part of the worst case) or
        "large budget" (the sanity check that a large budget leaves ~0%).
      budget: its epsilon.
      setup: the one-run adaptive setup that crafts it; run: that run.
    """

    label: str
    group: str
    budget: float
    setup: AdaptiveSetup
    run: dict

    @property
    def in_worst_case(self) -> bool:
        """Whether the part is one of the attacks an image must survive."""
        return self.group in WORST_CASE_GROUPS


def _part(setup: RobustnessSetup, budget: float, attack: tuple, steps: int | None = None) -> Part:
    label, group, name, threat, settings, samples = attack
    adaptive = AdaptiveSetup(
        dataset=setup.dataset,
        attack=name,
        epsilon=True,
        budgets=(budget,),
        attack_settings={"norm": setup.norm, **settings},
        # "none" scores the bare classifier; its oblivious runs are scored behind the
        # shipped REMIX too (the transfer setting, for the record)
        defenses=(setup.defense,) if setup.defense != "none" else adaptive_plan.DEFENSES[-1:],
        threats=(threat,),
        norm=setup.norm,
        samples=samples,
        steps=steps or setup.steps,
        iterations=setup.iterations,
        seed=setup.seed,
        num_keys=setup.num_keys,
        classifier=setup.classifier,
    )
    (run,) = adaptive_plan.plan(adaptive)
    return Part(label, group, budget, adaptive, run)


def _apgd(setup: RobustnessSetup, loss: str, draws: int) -> dict:
    """APGD's settings; ``draws`` only where > 1 (a deterministic model takes none)."""
    settings = {"loss": loss, "restarts": setup.restarts if loss != "dlr-targeted" else 1}
    return {**settings, "draws": draws} if draws > 1 else settings


def attacks(setup: RobustnessSetup, num_classes: int) -> list[tuple]:
    """The attacks at each budget: (label, group, attack, threat, settings, samples).

    DLR needs 3 classes and APGD-T 4 (their losses read the third / fourth logit);
    with fewer they are left out.
    """
    r, s = setup.draws, setup.portfolio_samples
    losses = [loss for loss, least in (("ce", 2), ("dlr", 3)) if num_classes >= least]
    out = [("APGD-CE", "bare", "apgd", "oblivious", _apgd(setup, "ce", 1), 1)]
    if num_classes >= 4:
        out.append(("APGD-T", "bare", "apgd", "oblivious", _apgd(setup, "dlr-targeted", 1), 1))
    if setup.defense == "none":
        return out
    if not setup.randomized:  # AutoAttack's standard APGD parts, through the defense
        return out + [
            (label, "standard", "apgd", "eot", settings, 1) for label, _, _, _, settings, _ in out
        ]
    out += [
        (f"APGD-{loss.upper()}, EOT-{r}", "rand", "apgd", "eot", _apgd(setup, loss, r), 1)
        for loss in losses
    ]
    margin = {"loss": "margin"}
    out.append(("PGD (transfer)", "portfolio", "pgd", "oblivious", margin, 1))
    for threat in setup.portfolio:
        out.append((f"PGD {threat}, EOT-{s}", "portfolio", "pgd", threat, margin, s))
    return out


def plan(setup: RobustnessSetup, num_classes: int) -> list[Part]:
    """The protocol's attacks, budget by budget, then the sanity checks."""
    parts = [_part(setup, b, a) for b in setup.budgets for a in attacks(setup, num_classes)]
    if setup.sanity and setup.defense != "none":
        parts += sanity_parts(setup)
    return parts


def sanity_parts(setup: RobustnessSetup) -> list[Part]:
    """APGD-CE with a quarter of the EOT draws (a randomized defense) and with a
    quarter of the steps at the checked budget (neither may leave a lower accuracy
    than the protocol's APGD-CE), and the protocol's APGD-CE at a large budget (it
    must leave ~0%)."""
    b, n = setup.checked_budget(), setup.steps
    r = setup.draws if setup.randomized else 1

    def check(group: str, draws: int, steps: int) -> tuple:
        eot = f", EOT-{draws}" if setup.randomized else ""
        label = f"APGD-CE{eot}, {steps} steps"
        return (label, group, "apgd", "eot", _apgd(setup, "ce", draws), 1)

    parts = [_part(setup, b, check("sanity", max(r // 4, 1), n))] if setup.randomized else []
    return parts + [
        _part(setup, b, check("sanity", r, max(n // 4, 1)), steps=max(n // 4, 1)),
        _part(setup, setup.large_budget or LARGE_BUDGET[setup.norm], check("large budget", r, n)),
    ]
