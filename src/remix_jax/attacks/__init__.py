"""Attacks that take a logits function: Carlini-Wagner L2, EAD, PGD, APGD (adaptive: .adaptive)."""

from remix_jax.attacks.apgd import apgd as apgd
from remix_jax.attacks.common import AttackResult as AttackResult
from remix_jax.attacks.cw import cw_l2 as cw_l2
from remix_jax.attacks.ead import ead as ead
from remix_jax.attacks.pgd import pgd as pgd
