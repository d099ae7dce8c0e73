"""Flax Linen modules: the skip autoencoder, the classifiers and MagNet's autoencoders."""

from remix_jax.models.autoencoder import AutoencoderConfig as AutoencoderConfig
from remix_jax.models.autoencoder import SkipAutoencoder as SkipAutoencoder
from remix_jax.models.autoencoder import init_autoencoder as init_autoencoder
from remix_jax.models.classifiers import MNISTClassifier as MNISTClassifier
