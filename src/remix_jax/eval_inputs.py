"""What every evaluation starts from: the protected model, the test split, and the first
N test images the classifier gets right (the images every evaluation attacks)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from remix_jax import data, evaluation
from remix_jax.pretrained import Pretrained, load_pretrained


class EvalInputs(NamedTuple):
    """The loaded model and images of one evaluation run.

    Attributes:
      pretrained: the classifier and REMIX's parameters.
      split: the test split (uint8 images, labels, where they came from).
      images: (N_test, H, W, C) float32 test images in [0, 1].
      chosen: (n,) indices of the first ``num_examples`` test images classified right
        (fewer when the classifier gets fewer right).
    """

    pretrained: Pretrained
    split: data.Split
    images: np.ndarray
    chosen: np.ndarray

    @property
    def x(self) -> np.ndarray:
        """(n, H, W, C) float32: the chosen images."""
        return self.images[self.chosen]

    @property
    def y(self) -> np.ndarray:
        """(n,) int: their labels."""
        return self.split.labels[self.chosen]

    def attacked(self) -> tuple:
        """(logits_fn, remix, x, y, indices as a list): the model and the images an
        adaptive or robustness evaluation takes after its setup."""
        pre = self.pretrained
        return pre.logits_fn, pre.remix, self.x, self.y, self.chosen.tolist()

    def classifier_weights(self) -> str:
        """The fingerprint of the classifier's weights (or, for a ``module:function``
        classifier, of its name and logits on a probe batch): part of every adaptive
        run's identity, so that no run is reused against another classifier."""
        from remix_jax import progress

        return progress.fingerprint(self.pretrained.classifier_params)

    def classifier_identity(self, dataset: str) -> dict:
        """What a cache of examples crafted on this classifier records of its weights:
        ``{"classifier_weights": fingerprint}``, or ``{}`` for the weights the
        committed caches were crafted on (the rule adaptive runs follow too:
        :func:`remix_jax.adaptive_plan.classifier_weights_entry`)."""
        from remix_jax.adaptive_plan import classifier_weights_entry

        return classifier_weights_entry(dataset, self.classifier_weights())

    def weights(self) -> str:
        """The fingerprint of the classifier's and REMIX's weights
        (:func:`remix_jax.progress.fingerprint`): part of a resumable scoring's identity."""
        from remix_jax import progress

        return progress.fingerprint(self.pretrained.classifier_params, self.pretrained.remix)

    def result_fields(self, num_keys: int, scored: dict, started: float) -> dict:
        """A result's fields after its settings: the classifier, the images, the keys,
        the ``scored`` numbers, the data's origin, wall time since ``started`` and the
        provenance stamp."""
        from remix_jax import provenance

        return {
            **self.pretrained.classifier_entry(),
            "num_examples": len(self.chosen),
            "num_keys": num_keys,
            **scored,
            "data_source": self.split.source,
            **provenance.finished(started),
        }


def load(
    dataset: str,
    num_examples: int,
    *,
    checkpoint_root: str | None = None,
    data_dir: str | None = None,
    classifier: str | None = None,
    inpainter: str | None = None,
) -> EvalInputs:
    """Loads the model (as :func:`remix_jax.load_pretrained`) and the test split, and
    picks the first ``num_examples`` test images the classifier gets right.

    Raises:
      FileNotFoundError / ValueError: a missing checkpoint or data, a classifier that
        does not fit the data (the message says which).
    """
    pretrained = load_pretrained(
        dataset, checkpoint_root, inpainter=inpainter, classifier=classifier
    )
    split = data.load_split(dataset, "test", data_dir)
    images = data.to_float(split.images)
    chosen = evaluation.first_correct(pretrained.logits_fn, images, split.labels, num_examples)
    return EvalInputs(pretrained, split, images, chosen)


def validation_images(
    dataset: str, size: int, data_dir: str | None = None
) -> tuple[np.ndarray, str]:
    """The clean images detectors are calibrated on: the last ``size`` training images,
    the validation set the training CLIs hold out (:func:`remix_jax.training.holdout`).

    Returns:
      (size, H, W, C) float32 images in [0, 1], and where the training split came from.

    Raises:
      ValueError: ``size`` not below the number of training images.
    """
    from remix_jax import training

    train = data.load_split(dataset, "train", data_dir)
    _, (images, _) = training.holdout(train.images, train.labels, size)
    return data.to_float(images), train.source


def defense_suite(dataset: str, pretrained: Pretrained, baselines, iterations) -> dict:
    """:func:`remix_jax.evaluation.defense_suite` of ``pretrained``'s classifier and
    REMIX, with the ``baselines`` (a :class:`remix_jax.cli.Baselines`: MagNet judged by
    the dataset's official detectors, APE-GAN, Defense-GAN; each None or loaded), for
    each number of rounds K in ``iterations``."""
    from remix_jax import components

    magnet = baselines.magnet
    official = components.magnet_official_names(dataset) if magnet is not None else ()
    return evaluation.defense_suite(
        pretrained.logits_fn, pretrained.remix, magnet, official, iterations,
        baselines.apegan, baselines.defensegan,
    )  # fmt: skip
