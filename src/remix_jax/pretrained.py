"""``load_pretrained``: the shipped classifier and a ready REMIX defense for a dataset.

Also what protecting one's own model needs: :func:`load_classifier_fn` resolves a
classifier given as a checkpoint folder or as ``package.module:function`` (a user's
JAX model), and :func:`load_remix` loads a REMIX trained on any dataset from its
checkpoint folders.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from remix_jax import checkpoints, components, datasets
from remix_jax._checks import check_image_shape
from remix_jax.defense import RemixParams
from remix_jax.magnet import MagNetParams, load_calibration
from remix_jax.models.autoencoder import AutoencoderConfig, autoencoder_module
from remix_jax.models.classifiers import as_variables
from remix_jax.models.magnet import MagNetAEConfig, MagNetAutoencoder


class Pretrained(NamedTuple):
    """A dataset's trained models.

    Attributes:
      classifier: the Flax module.
      classifier_params: its weights: bare params, or the whole Flax variables dict
        of a BatchNorm net (``as_variables`` gives what ``classifier.apply`` takes).
      logits_fn: ``logits_fn(x (B, H, W, C) in [0, 1]) -> (B, num_classes)``, what
        attacks take.
      remix: :class:`RemixParams` with reformer, inpainter, the dataset's n and K=1.
      classifier_source: None for the dataset's own classifier; else what
        ``classifier=`` named (a checkpoint folder as an absolute path, or
        ``module:function``), which results record. For a function, ``classifier`` is
        None and ``classifier_params`` stands in for the weights its closure hides:
        the name and its logits on a fixed probe batch, so that
        :func:`remix_jax.progress.fingerprint` tells a changed model apart.
    """

    classifier: nn.Module | None
    classifier_params: Any
    logits_fn: Callable[[jax.Array], jax.Array]
    remix: RemixParams
    classifier_source: str | None = None

    def classifier_entry(self) -> dict:
        """``{"classifier": classifier_source}`` for a result's JSON; ``{}`` for the
        dataset's own classifier (the results' default, left unnamed)."""
        return {"classifier": self.classifier_source} if self.classifier_source else {}

    def check_crafted_on(self, settings: dict, where: str) -> None:
        """ValueError unless cached examples (their ``settings``, read from ``where``)
        were crafted on this classifier: eval.sweep records a ``--classifier`` there."""
        shipped = "the dataset's classifier"
        crafted_on = settings.get("classifier") or shipped
        if crafted_on != (self.classifier_source or shipped):
            raise ValueError(
                f"{where} holds examples crafted on {crafted_on}, not on "
                f"{self.classifier_source or shipped}"
            )


def load_classifier(
    dataset: str, root: str | None = None, *, folder: str | None = None
) -> tuple[nn.Module, Any]:
    """Restores the dataset's classifier: ``folder``, else found as :func:`load_pretrained` says.

    A ``folder`` trained on another dataset (its meta.json says which) is built with
    that dataset's architecture, after checking that it takes ``dataset``'s images and
    classes.

    Returns:
      (module, weights): the bare params for stateless nets (MNIST), the whole
      variables dict for BatchNorm nets; ``model.apply(as_variables(weights), x)``
      classifies either way.

    Raises:
      ValueError: ``folder`` was trained on other image sizes or class counts.
    """
    if folder is not None:
        trained_on = checkpoint_dataset(folder)
        if trained_on is not None:
            check_trained_on(folder, trained_on, dataset, "classifier")
            dataset = trained_on
    folder = folder or components.find_checkpoint(dataset, "classifier", root)
    try:
        fields = checkpoints.read_metadata(folder).get("config", {}).get("module", {})
    except FileNotFoundError:
        fields = {}
    model = components.classifier(dataset, from_checkpoint=True, **fields)

    def init():
        x = jnp.zeros((1, *datasets.get(dataset).image_shape))
        variables = model.init(jax.random.key(0), x)
        return dict(variables) if len(variables) > 1 else variables["params"]

    return model, checkpoints.restore(folder, jax.eval_shape(init)).params


def restore_autoencoder(folder: str, hw: tuple[int, int]) -> tuple[AutoencoderConfig, Any, dict]:
    """Restores a reformer or inpainter from ``folder``; architecture from its meta.json.

    Returns:
      (architecture, params, the "config" entry of its meta.json).
    """
    meta_config = checkpoints.read_metadata(folder)["config"]
    config = AutoencoderConfig.from_dict(meta_config)

    def init():
        mask = jnp.ones((1, *hw, 1)) if config.mask_channel else None
        x = jnp.zeros((1, *hw, config.channels))
        return autoencoder_module(config).init(jax.random.key(0), x, mask)["params"]

    return config, checkpoints.restore(folder, jax.eval_shape(init)).params, meta_config


def load_autoencoder(
    dataset: str, component: str, root: str | None = None
) -> tuple[AutoencoderConfig, Any, dict]:
    """Restores the dataset's shipped reformer or inpainter (see :func:`restore_autoencoder`)."""
    folder = components.find_checkpoint(dataset, component, root)
    return restore_autoencoder(folder, datasets.get(dataset).hw)


def load_magnet(
    dataset: str = "mnist",
    root: str | None = None,
    *,
    folder: str | None = None,
    calibrated: bool = True,
) -> MagNetParams:
    """Restores the MagNet baseline trained by ``python -m train.magnet``.

    Args:
      dataset: a registered dataset with a MagNet set-up ("mnist", "cifar10").
      root: checkpoint root, searched as :func:`load_pretrained` says; MagNet lives
        in ``<root>/<dataset>/magnet``.
      folder: that folder directly (overrides ``root``).
      calibrated: read the thresholds from its ``detectors.json``; False returns the
        dataset's detectors (official and extra) with no thresholds yet.

    Returns:
      :class:`remix_jax.magnet.MagNetParams`; with ``calibrated``, its detectors are
      those of ``detectors.json``.
    """
    setup = components.magnet_setup(dataset)
    folder = folder or components.find_checkpoint(dataset, "magnet", root)
    hw = datasets.get(dataset).hw
    configs, params = [], {}
    for name in sorted(setup.autoencoders):
        sub = os.path.join(folder, name)
        config = MagNetAEConfig.from_dict(checkpoints.read_metadata(sub)["config"])

        def init(config=config):
            x = jnp.zeros((1, *hw, config.channels))
            return MagNetAutoencoder(config).init(jax.random.key(0), x)["params"]

        params[name] = checkpoints.restore(sub, jax.eval_shape(init)).params
        configs.append((name, config))
    detectors = components.magnet_detectors(dataset)
    thresholds = {}
    if calibrated:
        detectors, thresholds = load_calibration(folder)
    return MagNetParams(
        autoencoders=params,
        thresholds=thresholds,
        configs=tuple(configs),
        detectors=tuple(detectors),
        reformer=setup.reformer,
    )


def load_apegan(dataset: str, root: str | None = None, *, folder: str | None = None):
    """Restores the APE-GAN purifier trained by ``python -m train.apegan``.

    Args:
      dataset: a registered dataset.
      root: checkpoint root, searched as :func:`load_pretrained` says; APE-GAN lives in
        ``<root>/<dataset>/apegan``.
      folder: that folder directly (overrides ``root``).

    Returns:
      :class:`remix_jax.apegan.APEGANParams` (the generator; the discriminator is only
      for training).
    """
    from remix_jax import apegan

    folder = folder or components.find_checkpoint(dataset, "apegan", root)
    config = apegan.APEGANConfig.from_dict(_finished_run(folder, "apegan", dataset)["config"])
    shape = datasets.get(dataset).image_shape
    target = jax.eval_shape(lambda: apegan.init_params(jax.random.key(0), config, shape))
    params = checkpoints.restore(folder, target).params
    return apegan.APEGANParams(config, params["generator"])


def load_defensegan(
    dataset: str, root: str | None = None, *, folder: str | None = None, projection=None
):
    """Restores the Defense-GAN generator trained by ``python -m train.defensegan``.

    Args:
      dataset: a registered dataset.
      root: checkpoint root, searched as :func:`load_pretrained` says; Defense-GAN lives
        in ``<root>/<dataset>/defensegan``.
      folder: that folder directly (overrides ``root``).
      projection: a :class:`remix_jax.defensegan.Projection` (None: the official L = 200,
        R = 10).

    Returns:
      :class:`remix_jax.defensegan.DefenseGAN` (the generator; the critic is only for
      training).
    """
    from remix_jax import defensegan

    folder = folder or components.find_checkpoint(dataset, "defensegan", root)
    meta = _finished_run(folder, "defensegan", dataset)
    config = defensegan.DefenseGANConfig.from_dict(meta["config"])
    target = jax.eval_shape(lambda: defensegan.init_params(jax.random.key(0), config))
    params = checkpoints.restore(folder, target).params
    return defensegan.DefenseGAN(config, params["generator"], projection or defensegan.Projection())


def _finished_run(folder: str, trainer: str, dataset: str) -> dict:
    """The meta.json of a training run that finished (it records the test score), else
    ValueError: an interrupted run's weights are resumable, not a baseline to score."""
    meta = checkpoints.read_metadata(folder)
    if "test" not in meta:
        train = meta.get("train", {})
        planned = train.get("epochs", 0) * (
            train.get("train_images", 0) // max(train.get("batch_size", 1), 1)
        )
        command = meta.get("command") or f"python -m train.{trainer} --dataset {dataset}"
        raise ValueError(
            f"{os.path.abspath(folder)} holds an unfinished training run (step "
            f"{meta.get('steps', '?')} of {planned or '?'}; no test score in meta.json): "
            f"rerun its command to finish it: {command}"
        )
    return meta


def checkpoint_dataset(folder: str) -> str | None:
    """The registry name of the dataset a checkpoint was trained on (its meta.json's).

    A name this process does not know (a dataset registered from its data when the
    checkpoint was trained) is registered again from the meta.json's ``dataset_spec``.

    Returns:
      the name, or None where meta.json is absent or names no dataset.

    Raises:
      ValueError: the name is unknown and meta.json holds no spec, or the name is
        registered here with other images or classes than the checkpoint's.
    """
    try:
        meta = checkpoints.read_metadata(folder)
    except FileNotFoundError:
        return None
    name, fields = meta.get("dataset"), meta.get("dataset_spec")
    if name is None:
        return None
    if fields is None:
        if name not in datasets.names():
            raise ValueError(
                f"{folder} was trained on dataset {name!r}, which is not registered, and its "
                "meta.json holds no dataset_spec to register it from"
            )
        return name
    spec = datasets.spec_from_dict(fields)
    if name not in datasets.names():
        datasets.register(spec)
    known = datasets.get(name)
    if (known.image_shape, known.num_classes) != (spec.image_shape, spec.num_classes):
        raise ValueError(
            f"{folder} was trained on {name!r} as {_images(spec)}, but {name!r} is "
            f"registered here with {_images(known)} (another folder of that name?)"
        )
    return name


def _images(spec: datasets.DatasetSpec) -> str:
    h, w, c = spec.image_shape
    return f"{h}x{w}x{c} images of {spec.num_classes} classes"


def check_trained_on(folder: str, trained_on: str, dataset: str, component: str) -> None:
    """ValueError unless a ``component`` trained on ``trained_on`` fits ``dataset``'s data.

    Its images must have the same shape; a classifier's classes must also agree.
    """
    have, want = datasets.get(trained_on), datasets.get(dataset)
    same_classes = component != "classifier" or have.num_classes == want.num_classes
    if have.image_shape != want.image_shape or not same_classes:
        raise ValueError(
            f"{folder} was trained on {_images(have)} ({trained_on}), but {dataset} has "
            f"{_images(want)}: train a {component} on this data "
            f"(python -m train.{component} --dataset ...)"
        )


def load_classifier_fn(classifier: str, dataset: str) -> Callable[[jax.Array], jax.Array]:
    """The classifier to protect: a checkpoint folder or a user's JAX model.

    Args:
      classifier: a classifier checkpoint folder (what ``python -m train.classifier
        --checkpoint-dir`` writes), or ``"package.module:function"`` naming either
        ``logits_fn`` itself or a function of no arguments that returns it (the place
        to load weights once). ``logits_fn(x)`` takes x (B, H, W, C) float32 in
        [0, 1] and returns (B, num_classes) logits, jax-traceable (attacks
        differentiate it).
      dataset: a registered dataset (e.g. :func:`remix_jax.data.resolve` of a folder),
        whose image shape and number of classes the classifier must fit.

    Returns:
      ``logits_fn(x (B, H, W, C)) -> (B, num_classes)`` float32 logits.

    Raises:
      ValueError: one line saying what is wrong: a module that does not import, a
        name it does not have, a function that fails or returns other than
        (2, num_classes) floats on a (2, H, W, C) probe (checked with
        ``jax.eval_shape``, so nothing is computed), a checkpoint trained on other
        image sizes or classes.
      FileNotFoundError: a folder without a checkpoint.
    """
    return _resolve_classifier(classifier, dataset)[2]


def _resolve_classifier(classifier: str, dataset: str) -> tuple[nn.Module | None, Any, Callable]:
    """(module or None, weights or the function's stand-in, checked ``logits_fn``)."""
    spec = datasets.get(dataset)
    if os.path.isdir(classifier):
        model, params = load_classifier(dataset, folder=classifier)
        return model, params, _checked_logits(model.apply, as_variables(params), spec)
    module_name, colon, attribute = classifier.partition(":")
    if not (colon and module_name and attribute):
        raise ValueError(
            f"classifier {classifier!r} is neither a checkpoint folder nor package.module:function"
        )
    fn = _function(classifier, module_name, attribute)
    probe = jax.ShapeDtypeStruct((2, *spec.image_shape), jnp.float32)
    shape = f"(2, {', '.join(map(str, spec.image_shape))})"
    try:
        out = jax.eval_shape(fn, probe)
    except Exception as e:  # the user's code: whatever it raises means "does not fit"
        raise ValueError(
            f"classifier {classifier!r} fails on a {shape} float32 batch of {dataset}'s "
            f"images ({_one_line(e)})"
        ) from e
    wanted = (2, spec.num_classes)
    if not (
        isinstance(out, jax.ShapeDtypeStruct)
        and out.shape == wanted
        and jnp.issubdtype(out.dtype, jnp.floating)
    ):
        is_array = isinstance(out, jax.ShapeDtypeStruct)
        got = f"{out.shape} {out.dtype}" if is_array else f"a {type(out).__name__}"
        raise ValueError(
            f"classifier {classifier!r} returns {got} for a {shape} batch of {dataset}'s "
            f"images; expected {wanted} float logits ({spec.num_classes} classes)"
        )
    logits_fn = _checked_logits(lambda _, x: fn(x), None, spec)
    # its weights hide in a closure: its outputs on a fixed batch stand in for them
    # (jitted: one compilation, where an eager Flax model compiles op by op)
    x = jnp.linspace(0.0, 1.0, 2 * int(np.prod(spec.image_shape))).reshape(probe.shape)
    stand_in = {"source": classifier, "probe_logits": np.asarray(jax.jit(logits_fn)(x))}
    return None, stand_in, logits_fn


def _function(classifier: str, module_name: str, attribute: str) -> Callable:
    """``module:attribute`` imported; called first if it needs no arguments (a factory)."""
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # an import runs the user's code: any error means it failed
        raise ValueError(
            f"classifier {classifier!r}: cannot import {module_name} ({_one_line(e)})"
        ) from e
    try:
        fn = functools.reduce(getattr, attribute.split("."), module)
    except AttributeError:
        raise ValueError(f"classifier {classifier!r}: {module_name} has no {attribute}") from None
    if _is_factory(fn):
        try:
            fn = fn()
        except Exception as e:
            raise ValueError(
                f"classifier {classifier!r}: {attribute}() failed ({_one_line(e)})"
            ) from e
    if not callable(fn):
        raise ValueError(
            f"classifier {classifier!r}: expected logits_fn(x) or a function returning it, "
            f"got {type(fn).__name__}"
        )
    return fn


def _is_factory(fn: Any) -> bool:
    """True for a function callable with no arguments and without ``*args``.

    ``logits_fn(x)`` needs an argument, and a ``functools.partial(model.apply,
    variables)`` takes ``*args``; ``make_logits_fn()`` takes none.
    """
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # no signature (a C function, a class instance)
        return False
    return callable(fn) and not any(
        p.kind is p.VAR_POSITIONAL or (p.default is p.empty and p.kind is not p.VAR_KEYWORD)
        for p in parameters
    )


def _one_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def _checked_logits(apply: Callable, variables: Any, spec: datasets.DatasetSpec) -> Callable:
    """``logits_fn(x)`` = ``apply(variables, x)`` as float32, x's shape checked first."""
    height, width, channels = spec.image_shape

    def logits_fn(x):
        # shape and dtype only: values may not be concrete, and checking them here
        # would cost a host copy per call inside attack and evaluation loops
        check_image_shape("x", x, channels=channels, hw=(height, width))
        # a model in float16 or bfloat16: the attacks' margins are float32, and strict
        # promotion would refuse the mix
        return apply(variables, x).astype(jnp.float32)

    return logits_fn


def _remix(reformer: str, inpainter: str, dataset: str) -> RemixParams:
    """REMIX from a reformer and an inpainter folder; n and mask layout from the
    inpainter's meta.json (the dataset's n where it records none), K=1."""
    hw = datasets.get(dataset).hw
    reformer_config, reformer_params, _ = restore_autoencoder(reformer, hw)
    inpainter_config, inpainter_params, trained_with = restore_autoencoder(inpainter, hw)
    return RemixParams(
        inpainter=inpainter_params,
        reformer=reformer_params,
        inpainter_config=inpainter_config,
        reformer_config=reformer_config,
        n_masks=trained_with.get("n_masks", datasets.get(dataset).n_masks),
        iterations=1,
        per_channel=trained_with.get("per_channel", False),
    )


def load_remix(
    folder: str | None = None, *, reformer: str | None = None, inpainter: str | None = None
) -> RemixParams:
    """Loads a REMIX defense trained on any dataset, e.g. one registered from a folder.

    ``python -m train.reformer --dataset DATA`` and ``python -m train.inpainter
    --dataset DATA`` write ``checkpoints/<name>/reformer`` and ``.../inpainter``; their
    meta.json records the dataset's spec, which is registered again in this process
    when its name is unknown here (so ``remix_jax.data.load(<name>, ...)`` then reads
    the data it was trained on).

    Args:
      folder: a folder holding ``reformer/`` and ``inpainter/`` (``checkpoints/<name>``).
      reformer: the reformer's own folder, instead of ``folder``'s.
      inpainter: the inpainter's own folder, instead of ``folder``'s.

    Returns:
      :class:`RemixParams` for :func:`remix_jax.defend`: n and the mask layout the
      inpainter was trained with, K=1.

    Raises:
      FileNotFoundError: a folder without a checkpoint.
      ValueError: no folder for a component, a meta.json that names no dataset, or a
        reformer and an inpainter trained on different image shapes.
    """
    paths = {
        name: given or (folder and os.path.join(folder, name))
        for name, given in (("reformer", reformer), ("inpainter", inpainter))
    }
    if missing := [name for name, path in paths.items() if path is None]:
        raise ValueError(f"load_remix needs folder= or {'= and '.join(missing)}=")
    trained_on = {}
    for name, path in paths.items():
        if not os.path.isdir(path):
            raise FileNotFoundError(f"no {name} checkpoint folder {os.path.abspath(path)}")
        trained_on[name] = checkpoint_dataset(path)
        if trained_on[name] is None:
            raise ValueError(f"{path}: its meta.json names no dataset (trained elsewhere?)")
    check_trained_on(paths["reformer"], trained_on["reformer"], trained_on["inpainter"], "reformer")
    return _remix(paths["reformer"], paths["inpainter"], trained_on["inpainter"])


def protected_classifier(
    dataset: str, classifier: str | None = None, root: str | None = None
) -> tuple[Any, Any, Callable[[jax.Array], jax.Array], str | None]:
    """The classifier an evaluation or a baseline's training protects: ``classifier``
    (see :func:`load_classifier_fn`) or, if None, the dataset's shipped one (from
    ``root``, searched as :func:`load_pretrained` says).

    Returns:
      (module or None, weights, checked ``logits_fn``, source: None for the shipped
      classifier, else the folder's absolute path or the "module:function" name).
    """
    if classifier is None:
        model, params = load_classifier(dataset, root)
        logits_fn = _checked_logits(model.apply, as_variables(params), datasets.get(dataset))
        return model, params, logits_fn, None
    model, params, logits_fn = _resolve_classifier(classifier, dataset)
    source = os.path.abspath(classifier) if os.path.isdir(classifier) else classifier
    return model, params, logits_fn, source


def load_pretrained(
    dataset: str = "mnist",
    root: str | None = None,
    *,
    inpainter: str | None = None,
    classifier: str | None = None,
) -> Pretrained:
    """Loads the shipped checkpoints of a registered ``dataset`` (e.g. "mnist").

    Args:
      dataset: which dataset's models.
      root: checkpoint root holding ``<dataset>/<component>/``; when given, the only
        place searched. Otherwise each component comes from the first of
        ``$REMIX_CHECKPOINT_DIR``, the source checkout's ``checkpoints/`` (editable
        install, the repo's commands) and the MNIST / CIFAR-10 weights installed
        with the package (:func:`remix_jax.components.find_checkpoint`).
      inpainter: an inpainter checkpoint folder to use instead of the shipped one
        (a candidate or ablation); its n and mask layout come with it.
      classifier: the classifier to protect instead of the dataset's: a checkpoint
        folder or ``"package.module:function"`` (see :func:`load_classifier_fn`).

    Raises:
      FileNotFoundError: a component is nowhere searched (the message lists the
        places and the fixes) or its folder holds no checkpoint.
      ValueError: a ``classifier`` or ``inpainter`` that does not fit the dataset.
    """
    components.check_dataset(dataset)
    if inpainter is not None and (trained_on := checkpoint_dataset(inpainter)) is not None:
        check_trained_on(inpainter, trained_on, dataset, "inpainter")  # before slow loads
    model, params, logits_fn, source = protected_classifier(dataset, classifier, root)
    reformer = components.find_checkpoint(dataset, "reformer", root)
    inpainter = inpainter or components.find_checkpoint(dataset, "inpainter", root)
    remix = _remix(reformer, inpainter, dataset)
    return Pretrained(model, params, logits_fn, remix, source)
