"""The dataset registry: everything the project knows about a dataset, in one place.

A :class:`DatasetSpec` holds the image shape and number of classes, REMIX's settings
(mask count n, reformer noise), the evaluation grids (CW/EAD kappas, PGD budgets,
detector drop rates), the default classifier with its training recipe, and MagNet's
set-up. The CLIs take their ``--dataset`` choices and defaults from here, the loaders
their shape checks, ``load_pretrained`` its architectures; nothing else names a
dataset. Registering one more is one :func:`register` call::

    from remix_jax import datasets
    datasets.register(datasets.DatasetSpec(
        name="svhn", display_name="SVHN", image_shape=(32, 32, 3), num_classes=10,
        n_masks=3, reformer_noise=0.025, kappa_grid=(0, 10, 20, 30)))

Data the registry does not know (a folder, a tensorflow-datasets name) gets a spec
derived from its images by :func:`derive_spec` (:func:`remix_jax.data.resolve` does
this on first use); :func:`spec_to_dict` / :func:`spec_from_dict` carry a spec through
a checkpoint's ``meta.json``. The registry imports no JAX (the CLIs read it before
parsing). Checkpoints of a dataset live in ``<checkpoint root>/<name>/<component>``.
"""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Mapping

from remix_jax._registry import Registry

DETECTOR_KINDS = ("L1", "L2", "JSD")


def _frozen(mapping: Mapping | None) -> Mapping:
    return types.MappingProxyType(dict(mapping or {}))


@dataclasses.dataclass(frozen=True)
class DetectorSpec:
    """One MagNet detector.

    Attributes:
      name: its label in results, e.g. "I-L2" or "JSD-T10".
      autoencoder: the autoencoder it uses (a key of ``MagNetParams.autoencoders``).
      kind: "L1" / "L2" reconstruction error, or "JSD" between softmaxes.
      drop_rate: fraction of clean validation images it rejects (sets the threshold).
      temperature: softmax temperature T (JSD only).
    """

    name: str
    autoencoder: str
    kind: str
    drop_rate: float
    temperature: float = 1.0

    def __post_init__(self):
        if self.kind not in DETECTOR_KINDS:
            raise ValueError(f"kind must be one of {DETECTOR_KINDS}, got {self.kind!r}")
        if not 0.0 < self.drop_rate < 1.0:
            raise ValueError(f"drop_rate must be in (0, 1), got {self.drop_rate}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")


@dataclasses.dataclass(frozen=True)
class MagNetSetup:
    """MagNet's baseline on one dataset.

    Attributes:
      autoencoders: name -> MagNet autoencoder structure (``MagNetAEConfig.structure``).
      reformer: the autoencoder that reforms inputs.
      detectors: the official detectors with their clean drop rates.
      extra_detectors: detectors reported separately, as extras.
    """

    autoencoders: Mapping[str, tuple]
    reformer: str
    detectors: tuple[DetectorSpec, ...]
    extra_detectors: tuple[DetectorSpec, ...] = ()


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """One dataset's facts and the project's settings for it.

    Attributes:
      name: the registry key and ``--dataset`` value (also the data and checkpoint
        folder name).
      display_name: how tables and figures name it.
      image_shape: (H, W, C).
      num_classes: number of classes, labels 0..num_classes - 1.
      n_masks: REMIX's mask count n.
      reformer_noise: std of the Gaussian noise the reformer is trained to remove.
      kappa_grid: CW / EAD confidences of the Fig. 2 sweep.
      pgd_budgets: norm ("linf", "l2") -> the adaptive evaluation's epsilons.
      detector_drop_rates: clean drop rates at which detectors are calibrated; the
        first is the headline.
      classifier: "package.module:Name" of the default classifier, a Flax module
        ``Name(**fields)`` whose ``apply(variables, x)`` returns logits (a path, so
        that the registry imports no JAX and every ``--help`` stays instant).
      classifier_recipe: the default flags of ``train.classifier``.
      magnet: MagNet's set-up, or None where the project has none.
      apegan_epsilon: the FGSM step APE-GAN's purifier is trained against (its
        author's 0.3 on MNIST and 0.1 on CIFAR-10, APE-GAN issue #2).
      tfds_name: tensorflow-datasets' name for it (None: local data only).
      source: where the data of a dataset registered from its data lives (a folder,
        or "tfds:<name>[/<config>]"); None: ``<data dir>/<name>/`` or ``tfds_name``.
      class_names: class index -> name, where the data names its classes (an
        ImageFolder's sorted class folders, tensorflow-datasets' labels); may be empty.
    """

    name: str
    display_name: str
    image_shape: tuple[int, int, int]
    num_classes: int
    n_masks: int
    reformer_noise: float
    kappa_grid: tuple[float, ...]
    pgd_budgets: Mapping[str, tuple[float, ...]] = dataclasses.field(default_factory=dict)
    detector_drop_rates: tuple[float, ...] = (0.01, 0.05)
    classifier: str | None = None
    classifier_recipe: Mapping[str, object] = dataclasses.field(default_factory=dict)
    magnet: MagNetSetup | None = None
    apegan_epsilon: float = 0.1
    tfds_name: str | None = None
    source: str | None = None
    class_names: tuple[str, ...] = ()

    def __post_init__(self):
        shape = tuple(self.image_shape)
        if len(shape) != 3 or min(shape) < 1 or shape[2] not in (1, 3):
            raise ValueError(f"image_shape must be (H, W, 1 or 3), got {self.image_shape}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {self.num_classes}")
        if not 2 <= self.n_masks <= shape[0] * shape[1]:
            raise ValueError(f"n_masks must be in [2, H*W], got {self.n_masks}")
        if not self.name or not self.name.replace("_", "").isalnum():
            raise ValueError(f"name must be a non-empty identifier, got {self.name!r}")
        if self.class_names and len(self.class_names) != self.num_classes:
            raise ValueError(
                f"class_names must name all {self.num_classes} classes, got {len(self.class_names)}"
            )
        object.__setattr__(self, "image_shape", shape)
        object.__setattr__(self, "kappa_grid", tuple(self.kappa_grid))
        object.__setattr__(self, "detector_drop_rates", tuple(self.detector_drop_rates))
        object.__setattr__(self, "class_names", tuple(self.class_names))
        object.__setattr__(
            self, "pgd_budgets", _frozen({k: tuple(v) for k, v in self.pgd_budgets.items()})
        )
        object.__setattr__(self, "classifier_recipe", _frozen(self.classifier_recipe))

    @property
    def hw(self) -> tuple[int, int]:
        """(H, W)."""
        return self.image_shape[:2]

    @property
    def channels(self) -> int:
        return self.image_shape[2]


_REGISTRY: Registry[DatasetSpec] = Registry("dataset", DatasetSpec)


def register(spec: DatasetSpec, *, replace: bool = False) -> DatasetSpec:
    """Adds a dataset to the registry (``replace=True`` overwrites one of that name)."""
    return _REGISTRY.add(spec, replace=replace)


def unregister(name: str) -> None:
    """Removes a dataset (tests register toy datasets and remove them)."""
    _REGISTRY.remove(name)


def get(name: str) -> DatasetSpec:
    """The spec of a registered dataset; ValueError naming the choices otherwise."""
    return _REGISTRY.get(name)


def names() -> list[str]:
    """The registered datasets, in registration order (the first is the CLIs' default)."""
    return _REGISTRY.names()


def default() -> str:
    """The CLIs' default ``--dataset``: the first registered."""
    return names()[0]


def file_suffix(name: str) -> str:
    """ "" for the default dataset, "_<name>" for the others (result file names)."""
    return "" if name == default() else f"_{get(name).name}"


# Defaults of a dataset registered from its data (derive_spec). REMIX's n, the
# reformer's noise and the L-inf budgets are per-pixel settings: they follow the shipped
# dataset with the same channel count (MNIST for grayscale, CIFAR-10 for colour) at any
# size. An L2 budget bounds the norm over all H*W*C values, so it scales with
# sqrt(H*W*C) from that dataset's size (CIFAR-10's 0.5 at 32x32x3 -> 3.5 at 224x224x3,
# near ImageNet's usual 3.0).
_REFERENCE_BY_CHANNELS = {1: "mnist", 3: "cifar10"}
# CW / EAD's kappa is a logit margin: it depends on the classifier, not the images. The
# default classifier's gaps on CIFAR-10 have median 5.6 and maximum 20
# (results/logit-gaps.md); the grid spans them and beyond.
DERIVED_KAPPA_GRID = (0.0, 5.0, 10.0, 20.0, 40.0)
# Its global max-pool takes any H x W from 8 x 8 up (three 2x2 poolings).
DERIVED_CLASSIFIER = "remix_jax.models.classifiers:CIFARResNet"
MIN_DERIVED_SIZE = 8


# Side length up to which the default networks work at full resolution: MNIST's and
# CIFAR-10's (28, 32) and up to 64 px. Larger images are halved first, once per doubling
# beyond it (224 px -> 2 halvings, 56 px), so that the default classifier and REMIX's
# autoencoders cost about as much per pixel-at-their-resolution as on 64 px images
# (defend() at 224x224x3 at full resolution: 23 GFLOP an image).
FULL_RESOLUTION_SIDE = 64


def halvings(hw: tuple[int, int], *, exact: bool = True) -> int:
    """How often the default networks halve (H, W) images before their main layers:
    once per doubling of the longer side beyond :data:`FULL_RESOLUTION_SIDE`; with
    ``exact``, only while both sides stay even (a stride-2 autoencoder must restore the
    exact size; the classifier's max-pools floor odd sizes and need not). 0 for MNIST
    and CIFAR-10, so their shipped networks are unchanged."""
    h, w = (int(d) for d in hw)
    k = 0
    while max(h, w) > FULL_RESOLUTION_SIDE * 2**k and (
        not exact or (h % 2 ** (k + 1) == 0 and w % 2 ** (k + 1) == 0)
    ):
        k += 1
    return k


def derive_spec(
    name: str,
    image_shape: tuple[int, int, int],
    num_classes: int,
    *,
    source: str,
    display_name: str | None = None,
    class_names: tuple[str, ...] = (),
) -> DatasetSpec:
    """The spec of a dataset the registry does not know, with defaults from its images.

    Args:
      name: the registry name (an identifier; also the checkpoint folder name).
      image_shape: (H, W, C), C in {1, 3}, H and W >= :data:`MIN_DERIVED_SIZE`.
      num_classes: >= 2.
      source: where its data lives (a folder or "tfds:<name>[/<config>]").
      display_name: how tables name it (default: ``name``).
      class_names: class index -> name, if the data names its classes.

    Returns:
      A spec with n_masks, reformer_noise, apegan_epsilon and the L-inf budgets of the
      shipped dataset with the same channel count, L2 budgets scaled by sqrt(H*W*C) from it,
      :data:`DERIVED_KAPPA_GRID`, detector drop rates (0.01, 0.05),
      :data:`DERIVED_CLASSIFIER` with CIFAR-10's recipe at batch 128 without
      augmentation, and no MagNet set-up.

    Raises:
      ValueError: a shape or class count it cannot serve.
    """
    shape = tuple(int(d) for d in image_shape)
    if len(shape) != 3 or shape[2] not in _REFERENCE_BY_CHANNELS:
        raise ValueError(f"images must be (H, W, 1 or 3), got {image_shape}")
    if min(shape[:2]) < MIN_DERIVED_SIZE:
        raise ValueError(
            f"images of {shape[0]}x{shape[1]} are too small for the default classifier "
            f"(at least {MIN_DERIVED_SIZE}x{MIN_DERIVED_SIZE})"
        )
    reference = get(_REFERENCE_BY_CHANNELS[shape[2]])
    # CIFAR-10's one-cycle recipe at a quarter of its batch (the learning rate scaled
    # alike), so that a few thousand images still give many steps; no augmentation, as a
    # flip does not keep the label of every dataset (digits, text, laterality): pass
    # --augment to train.classifier where it does
    recipe = get("cifar10").classifier_recipe
    recipe = {
        **recipe,
        "batch_size": recipe["batch_size"] // 4,
        "learning_rate": recipe["learning_rate"] / 4,
        "augment": False,
    }
    scale = (shape[0] * shape[1] * shape[2] / math.prod(reference.image_shape)) ** 0.5
    return DatasetSpec(
        name=name,
        display_name=display_name or name,
        image_shape=shape,
        num_classes=num_classes,
        n_masks=reference.n_masks,
        reformer_noise=reference.reformer_noise,
        apegan_epsilon=reference.apegan_epsilon,
        kappa_grid=DERIVED_KAPPA_GRID,
        pgd_budgets={
            "linf": reference.pgd_budgets["linf"],
            "l2": tuple(float(f"{eps * scale:.3g}") for eps in reference.pgd_budgets["l2"]),
        },
        detector_drop_rates=(0.01, 0.05),
        classifier=DERIVED_CLASSIFIER,
        classifier_recipe=recipe,
        source=source,
        class_names=class_names,
    )


def format_epsilon(eps: float) -> str:
    """A budget as people write it: 8/255 rather than 0.0313725; 0.3 stays 0.3."""
    text, steps = f"{eps:g}", eps * 255
    return f"{round(steps)}/255" if len(text) > 5 and abs(steps - round(steps)) < 1e-4 else text


def summary(spec: DatasetSpec) -> str:
    """A few lines that show a spec's data and settings (printed when one is derived)."""
    h, w, c = spec.image_shape
    names = ", ".join(spec.class_names[:10]) + (", ..." if len(spec.class_names) > 10 else "")

    budgets = "; ".join(
        f"{norm} {', '.join(map(format_epsilon, eps_list))}"
        for norm, eps_list in spec.pgd_budgets.items()
    )
    return (
        f"dataset {spec.name!r} ({spec.source or spec.display_name}): {h}x{w}x{c} images, "
        f"{spec.num_classes} classes" + (f" ({names})" if names else "") + "\n"
        f"  n_masks={spec.n_masks}  reformer_noise={spec.reformer_noise:g}  "
        f"kappa_grid={', '.join(f'{k:g}' for k in spec.kappa_grid)}\n"
        f"  PGD budgets: {budgets}  detector drop rates: "
        f"{', '.join(f'{r:g}' for r in spec.detector_drop_rates)}\n"
        f"  classifier {spec.classifier} {dict(spec.classifier_recipe)}\n"
        f"  downsampling for {h}x{w} images: the classifier's stem pools "
        f"{halvings((h, w), exact=False)}, the autoencoders' stride-2 layers "
        f"{min(halvings((h, w)), 4)}"
    )


def spec_to_dict(spec: DatasetSpec) -> dict:
    """A spec as plain JSON-able values (lists for tuples), e.g. for a checkpoint's meta.json.

    :func:`spec_from_dict` inverts it: ``spec_from_dict(spec_to_dict(s)) == s``.
    """

    def plain(value):
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, Mapping):
            return {key: plain(item) for key, item in value.items()}
        if isinstance(value, tuple | list):
            return [plain(item) for item in value]
        return value

    return plain(spec)


def spec_from_dict(fields: Mapping) -> DatasetSpec:
    """The :class:`DatasetSpec` that :func:`spec_to_dict` wrote (after a JSON round trip).

    Raises:
      ValueError: fields a DatasetSpec does not have (a newer writer), or bad values.
    """
    known = {f.name for f in dataclasses.fields(DatasetSpec)}
    if unknown := sorted(set(fields) - known):
        raise ValueError(f"not DatasetSpec fields: {unknown}")
    fields = dict(fields)
    if (magnet := fields.get("magnet")) is not None:
        fields["magnet"] = MagNetSetup(
            autoencoders={k: tuple(v) for k, v in magnet["autoencoders"].items()},
            reformer=magnet["reformer"],
            detectors=tuple(DetectorSpec(**d) for d in magnet["detectors"]),
            extra_detectors=tuple(DetectorSpec(**d) for d in magnet.get("extra_detectors", ())),
        )
    return DatasetSpec(**fields)


# MagNet as in its official MNIST code (train_defense.py / test_defense.py) and
# Carlini's reconstruction of its CIFAR-10 set-up. "JSD-T10"/"JSD-T40" on MNIST are
# extras (MagNet's MNIST code uses only I-L2 and II-L1); results report MagNet with
# the official set and, separately, with the extras added.
register(
    DatasetSpec(
        name="mnist",
        display_name="MNIST",
        image_shape=(28, 28, 1),
        num_classes=10,
        n_masks=2,  # paper, Sec. IV
        reformer_noise=0.1,  # MagNet's official code
        apegan_epsilon=0.3,
        kappa_grid=(0, 5, 10, 15, 20, 25, 30, 35, 40),
        pgd_budgets={"linf": (0.05, 0.1, 0.2, 0.3), "l2": (1.0, 2.0, 3.0)},
        detector_drop_rates=(0.001, 0.01, 0.05),  # MagNet's (Meng and Chen 2017)
        classifier="remix_jax.models.classifiers:MNISTClassifier",
        # MagNet's / Carlini's recipe
        classifier_recipe=dict(
            epochs=50,
            batch_size=128,
            learning_rate=0.01,
            schedule="constant",
            weight_decay=0.0,
            label_smoothing=0.0,
            augment=False,
        ),
        magnet=MagNetSetup(
            autoencoders={"I": (3, "average", 3), "II": (3,)},
            reformer="I",
            detectors=(
                DetectorSpec("I-L2", "I", "L2", 0.001),
                DetectorSpec("II-L1", "II", "L1", 0.001),
            ),
            extra_detectors=(
                DetectorSpec("JSD-T10", "I", "JSD", 0.001, temperature=10.0),
                DetectorSpec("JSD-T40", "I", "JSD", 0.001, temperature=40.0),
            ),
        ),
        tfds_name="mnist",
    )
)

register(
    DatasetSpec(
        name="cifar10",
        display_name="CIFAR-10",
        image_shape=(32, 32, 3),
        num_classes=10,
        n_masks=3,  # paper, Sec. IV
        reformer_noise=0.025,  # MagNet's official code
        apegan_epsilon=0.1,
        kappa_grid=tuple(range(0, 101, 10)),
        # RobustBench's 8/255 and 0.5, with a smaller and a larger one for the curve
        pgd_budgets={"linf": (2 / 255, 4 / 255, 8 / 255), "l2": (0.25, 0.5, 1.0)},
        detector_drop_rates=(0.005, 0.01, 0.05),  # MagNet's L1 detector's
        classifier="remix_jax.models.classifiers:CIFARResNet",
        # Page's fast ResNet-9 recipe without label smoothing (train/classifier.py says why)
        classifier_recipe=dict(
            epochs=24,
            batch_size=512,
            learning_rate=0.4,
            schedule="onecycle",
            weight_decay=5e-4,
            label_smoothing=0.0,
            augment=True,
        ),
        magnet=MagNetSetup(
            autoencoders={"I": (3,)},
            reformer="I",
            detectors=(
                DetectorSpec("I-L1", "I", "L1", 0.005),
                DetectorSpec("JSD-T10", "I", "JSD", 0.01, temperature=10.0),
                DetectorSpec("JSD-T40", "I", "JSD", 0.01, temperature=40.0),
            ),
        ),
        tfds_name="cifar10",
    )
)
