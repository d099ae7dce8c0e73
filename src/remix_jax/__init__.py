"""remix-jax: REMIX (reform, randomly mask, inpaint) and its evaluation in JAX."""

from remix_jax.defense import RemixParams as RemixParams
from remix_jax.defense import defend as defend
from remix_jax.defense import mask_inpaint as mask_inpaint
from remix_jax.masking import batch_random_masks as batch_random_masks
from remix_jax.masking import random_masks as random_masks
from remix_jax.pretrained import load_pretrained as load_pretrained

__version__ = "0.1.0"
