"""What every command-line tool shares; imports no JAX, so ``--help`` is instant."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable
from typing import Any, NamedTuple


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: ...)`` to an option's help only where it tells something.

    Left out for on/off flags (their default is "not given"), for ``None`` defaults
    (the help says what ``None`` means) and where the help already names its default.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.nargs == 0 or action.default is None or "default:" in text:
            return action.help
        return super()._get_help_string(action)


def parser(doc: str) -> argparse.ArgumentParser:
    """A command's parser: its description the first line of ``doc`` (the module's
    docstring), defaults shown in ``--help``."""
    return argparse.ArgumentParser(description=doc.splitlines()[0], formatter_class=HelpFormatter)


# help texts of the options most tools share
DATA_DIR_HELP = (
    "folder with <dataset>/<split>.npz (default: $REMIX_DATA_DIR, else tensorflow-datasets); "
    "for --dataset tfds:<name>, tensorflow-datasets' data folder"
)
CHECKPOINT_ROOT_HELP = (
    "only this folder (default: each component from $REMIX_CHECKPOINT_DIR, the checkout's "
    "checkpoints/, then the weights installed with the package)"
)


def add_dataset_flag(parser: argparse.ArgumentParser, *, many: bool = False) -> None:
    """``--dataset`` (or ``--datasets`` with ``many``): a registered name or a data source.

    A registered name (the default: the registry's first) parses as itself; a folder
    or ``tfds:<name>[/<config>]`` is registered from its data by
    :func:`remix_jax.data.resolve` while parsing, so the value the tool sees is a
    registry name; bad data fails here, with the reason, before any work. A
    ``tfds:`` source is looked up in the command line's ``--data-dir`` (tensorflow-datasets'
    data folder, as :func:`remix_jax.data.load` takes it), wherever that flag stands.
    """
    from remix_jax import datasets  # imports no JAX

    command_line = {}  # "data_dir": --data-dir of the arguments being parsed

    def dataset(text: str) -> str:
        if text in datasets.names():
            return text
        from remix_jax import data  # numpy and Pillow: only for a source

        try:
            return data.resolve(text, command_line.get("data_dir"))
        except (FileNotFoundError, ValueError) as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse_known_args = parser.parse_known_args

    def parse_known_args_data_dir_first(args=None, namespace=None):
        # argparse converts --dataset where it stands, maybe before --data-dir: read that first
        first = argparse.ArgumentParser(add_help=False, exit_on_error=False)
        first.add_argument("--data-dir", default=None)
        try:
            command_line["data_dir"] = first.parse_known_args(args)[0].data_dir
        except argparse.ArgumentError:  # e.g. no value: the tool's own parser says so
            command_line["data_dir"] = None
        return parse_known_args(args, namespace)

    parser.parse_known_args = parse_known_args_data_dir_first

    text = (
        f"a registered dataset ({', '.join(datasets.names())}), tfds:<name>[/<config>], "
        "or a folder with <split>.npz files or <split>/<class>/*.png|jpg images"
    )
    if many:
        parser.add_argument(
            "--datasets",
            nargs="+",
            type=dataset,
            default=datasets.names(),
            metavar="DATASET",
            help=f"each {text}",
        )
    else:
        parser.add_argument(
            "--dataset", type=dataset, default=datasets.default(), metavar="DATASET", help=text
        )


def check_output_path(prefix: str, flag: str = "--out") -> None:
    """Exits with one line unless files ``<prefix>.*`` can be written, before any work.

    Creates the folder; a long run must not find out at its end that it cannot save.
    ``flag`` names the option the path comes from (its default included).
    """
    import os
    import sys

    if os.path.isdir(prefix):
        sys.exit(f"error: {flag} {prefix} is a folder; {flag} names a file prefix")
    check_output_folder(os.path.dirname(os.path.abspath(prefix)), flag)


def check_output_folder(folder: str, flag: str) -> None:
    """Exits with one line naming ``flag`` unless ``folder`` is (or can be created as) a
    writable folder; creates it."""
    import os
    import sys

    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        sys.exit(f"error: {flag}: cannot create the output folder {folder} ({e.strerror})")
    if not os.access(folder, os.W_OK | os.X_OK):
        sys.exit(f"error: {flag}: the output folder {folder} is not writable")


def _existing(text: str, kind: str) -> str:
    import os

    if not (os.path.isdir if kind == "folder" else os.path.isfile)(text):
        what = f"is not a {kind}" if os.path.exists(text) else "does not exist"
        raise argparse.ArgumentTypeError(f"{text} {what}")
    return text


def existing_folder(text: str) -> str:
    """An argparse ``type`` for a folder that is read: it must exist, so a typo fails at
    parsing, with the flag's name, not after minutes of loading."""
    return _existing(text, "folder")


def existing_file(text: str) -> str:
    """An argparse ``type`` for a file that is read: it must exist (see
    :func:`existing_folder`)."""
    return _existing(text, "file")


def add_source_flags(parser: argparse.ArgumentParser) -> None:
    """``--data-dir`` and ``--checkpoint-root``: where the data and the weights are read."""
    parser.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    parser.add_argument(
        "--checkpoint-root", type=existing_folder, default=None, help=CHECKPOINT_ROOT_HELP
    )


@contextlib.contextmanager
def exit_on_load_errors(hint: Callable[[str], str] = lambda message: ""):
    """Turns what loading raises for a user's mistake (a missing checkpoint or data
    file, a classifier that does not fit the data, a dataset without some component)
    into one ``error:`` line and exit status 1, not a traceback. ``hint(message)``
    may add a fix to the line."""
    import sys

    try:
        yield
    except (FileNotFoundError, ValueError, NotImplementedError) as e:
        sys.exit(f"error: {e}{hint(str(e))}")


def add_baseline_flags(parser: argparse.ArgumentParser) -> None:
    """The baselines scored beside REMIX: MagNet unless ``--no-magnet``, APE-GAN with
    ``--apegan``, Defense-GAN with ``--defensegan`` (loaded by :func:`load_baselines`)."""
    parser.add_argument("--no-magnet", action="store_true", help="leave out the MagNet rows")
    parser.add_argument(
        "--apegan",
        action="store_true",
        help="score the APE-GAN baseline too (checkpoints/<dataset>/apegan: python -m "
        "train.apegan)",
    )
    parser.add_argument(
        "--defensegan",
        action="store_true",
        help="score the Defense-GAN baseline too (checkpoints/<dataset>/defensegan: "
        "python -m train.defensegan)",
    )
    parser.add_argument(
        "--defensegan-steps",
        type=positive_int,
        default=200,
        help="Defense-GAN's L, gradient steps per start (official 200)",
    )
    parser.add_argument(
        "--defensegan-restarts",
        type=positive_int,
        default=10,
        help="Defense-GAN's R, random starts per image (official 10)",
    )


class Baselines(NamedTuple):
    """The baselines :func:`load_baselines` loaded (None where not asked for)."""

    magnet: Any = None
    apegan: Any = None
    defensegan: Any = None

    def networks(self) -> list:
        """What the baselines' outputs depend on (weights, thresholds, Defense-GAN's
        projection settings), for :func:`remix_jax.progress.fingerprint`."""
        import dataclasses
        import json

        import numpy as np

        trees = [self.magnet] if self.magnet is not None else []
        trees += [self.apegan.generator] if self.apegan is not None else []
        if self.defensegan is not None:
            projection = json.dumps(dataclasses.asdict(self.defensegan.projection))
            trees += [self.defensegan.generator, np.frombuffer(projection.encode(), np.uint8)]
        return trees

    def settings(self) -> dict:
        """What a result records of the GAN baselines: each generator's fingerprint
        (which trained network was scored) and Defense-GAN's L and R."""
        from remix_jax import progress

        recorded = {}
        if self.apegan is not None:
            recorded["apegan"] = {"weights": progress.fingerprint(self.apegan.generator)}
        if self.defensegan is not None:
            projection = self.defensegan.projection
            recorded["defensegan"] = {
                "weights": progress.fingerprint(self.defensegan.generator),
                "steps": projection.steps,
                "restarts": projection.restarts,
            }
        return recorded


def load_baselines(args: argparse.Namespace, skip: bool = False) -> Baselines:
    """The baselines :func:`add_baseline_flags`' flags ask for, from
    ``--checkpoint-root``; none with ``skip``. A missing checkpoint exits with one line
    saying how to leave the baseline out."""
    if skip:
        return Baselines()
    from remix_jax.defensegan import Projection
    from remix_jax.pretrained import load_apegan, load_defensegan, load_magnet

    with exit_on_load_errors(lambda message: " (or leave MagNet out with --no-magnet)"):
        magnet = None if args.no_magnet else load_magnet(args.dataset, args.checkpoint_root)
    with exit_on_load_errors(lambda message: " (or leave out --apegan)"):
        apegan = load_apegan(args.dataset, args.checkpoint_root) if args.apegan else None
    defensegan = None
    if args.defensegan:
        projection = Projection(steps=args.defensegan_steps, restarts=args.defensegan_restarts)
        with exit_on_load_errors(lambda message: " (or leave out --defensegan)"):
            defensegan = load_defensegan(args.dataset, args.checkpoint_root, projection=projection)
    return Baselines(magnet, apegan, defensegan)


def add_search_attack_flags(
    parser: argparse.ArgumentParser,
    *,
    initial_const: float,
    budget: tuple[int, int] | None = None,
    ead: bool = True,
) -> None:
    """The flags of CW-L2 and EAD's search: ``--binary-search-steps``,
    ``--max-iterations``, ``--initial-const``, ``--beta`` and ``--decision-rule``.

    Args:
      parser: where to add them.
      initial_const: the first c (the flag also takes "linear").
      budget: the defaults (binary-search steps, iterations per step); None adds
        ``--preset`` (the registry's presets, "cpu" by default), which the two flags
        then override.
      ead: whether to add EAD's ``--beta`` and ``--decision-rule``.
    """
    from remix_jax import attack_registry

    note = ""
    if budget is None:
        presets = sorted(attack_registry.PRESETS.items())
        parser.add_argument(
            "--preset",
            choices=[name for name, _ in presets],
            default="cpu",
            help="attack budget: "
            + "; ".join(
                f"{k} {v['binary_search_steps']} x {v['max_iterations']}" for k, v in presets
            ),
        )
        note, budget = " (overrides --preset)", (None, None)
    parser.add_argument(
        "--binary-search-steps", type=search_steps, default=budget[0], help="steps on c" + note
    )
    parser.add_argument(
        "--max-iterations",
        type=attack_iterations,
        default=budget[1],
        help="iterations per search step" + note,
    )
    parser.add_argument(
        "--initial-const",
        type=initial_const_value,
        default=initial_const,
        help="first c: a positive number, or 'linear' (each example's own, from its "
        "linearised margin: a shorter search then reaches the same L2; bench/NOTES.md)",
    )
    if not ead:
        return
    parser.add_argument("--beta", type=nonnegative_float, default=0.1, help="EAD's L1 weight")
    parser.add_argument(
        "--decision-rule",
        choices=["EN", "L1"],
        default="EN",
        help="EAD: which distortion picks the best example (EN = L2 + beta L1)",
    )


def add_attack_flag(parser: argparse.ArgumentParser, budget: str | None = None) -> None:
    """``--attack``, required: a registered attack (of one budget kind, e.g.
    "confidence", if given), then ``--dataset``."""
    from remix_jax import attack_registry

    choices = attack_registry.names(budget) if budget else attack_registry.names()
    parser.add_argument("--attack", choices=choices, required=True)
    add_dataset_flag(parser)


def add_evaluation_flags(
    parser: argparse.ArgumentParser, *, num_examples: int, num_keys: int, keys: str
) -> None:
    """``--num-examples`` (the first N test images the classifier gets right: see
    :func:`remix_jax.evaluation.first_correct`), ``--num-keys`` (``keys`` says what
    a key draws), with their defaults, and ``--seed`` (:func:`add_seed_flag`)."""
    parser.add_argument(
        "--num-examples",
        type=positive_int,
        default=num_examples,
        help="first N test images the bare classifier gets right",
    )
    parser.add_argument("--num-keys", type=positive_int, default=num_keys, help=keys)
    add_seed_flag(parser)


def add_seed_flag(parser: argparse.ArgumentParser) -> None:
    """``--seed``: the one seed of a run's random draws, folded in by purpose
    (:mod:`remix_jax.keys`)."""
    parser.add_argument(
        "--seed",
        type=seed,
        default=0,
        help="seed of every random draw, folded in by purpose (evaluation keys, "
        "attacker, calibration; see remix_jax.keys)",
    )


def add_output_flags(parser: argparse.ArgumentParser, *, out: str, cache: str | None) -> None:
    """Where a run reads and writes: the source flags (:func:`add_source_flags`),
    ``--classifier``, ``--out`` (a file prefix) and, unless ``cache`` is None,
    ``--cache-dir``; each help says its default."""
    add_source_flags(parser)
    add_classifier_flag(parser)
    if cache is not None:
        parser.add_argument("--cache-dir", default=None, help=f"default: {cache}")
    parser.add_argument("--out", default=None, help=f"default: {out}")


def load_eval_inputs(args: argparse.Namespace):
    """:func:`remix_jax.eval_inputs.load` from an evaluation CLI's flags (``--dataset``,
    ``--num-examples``, the source flags, ``--classifier``, ``--inpainter`` where the
    tool has it); a loading error exits with one line."""
    from remix_jax import eval_inputs

    with exit_on_load_errors():
        return eval_inputs.load(
            args.dataset,
            args.num_examples,
            checkpoint_root=args.checkpoint_root,
            data_dir=args.data_dir,
            classifier=args.classifier,
            inpainter=getattr(args, "inpainter", None),
        )


def render_only(out: str, render: Callable[[str], None], files: str) -> None:
    """``--render-only``: ``render(out)`` rewrites a result's tables and plots (named by
    ``files``, e.g. ".md / .png") from ``<out>.json``; exits with one line without it."""
    import os
    import sys

    if not os.path.isfile(out + ".json"):
        sys.exit(f"error: --render-only needs {out}.json")
    render(out)
    print(f"-> {out}{files}")


def add_classifier_flag(parser: argparse.ArgumentParser) -> None:
    """``--classifier``: the classifier to protect and score, instead of the dataset's.

    The value passes through to :func:`remix_jax.pretrained.load_pretrained`
    (``classifier=``), which resolves and checks it once JAX runs; with
    :func:`require_with_classifier` a tool asks for the paths whose defaults hold the
    shipped classifier's results.
    """
    parser.add_argument(
        "--classifier",
        default=None,
        metavar="FOLDER|MODULE:FUNCTION",
        help="the classifier to protect instead of the dataset's: a checkpoint folder (what "
        "train.classifier --checkpoint-dir writes) or package.module:function naming a "
        "JAX logits_fn(x) (x (B, H, W, C) float32 in [0, 1] -> (B, num_classes) logits) or "
        "a function of no arguments returning one",
    )


def require_with_classifier(
    parser: argparse.ArgumentParser, args: argparse.Namespace, *flags: str
) -> None:
    """Fails at parsing unless each of ``flags`` (e.g. "--out") is given where
    ``--classifier`` scores another classifier on a project dataset (mnist, cifar10):
    their defaults hold the shipped classifier's results and caches, which it must
    not overwrite or read as its own. Datasets registered from their data have no
    shipped results, so their defaults stand.
    """
    from remix_jax import datasets  # imports no JAX

    if args.classifier is None or datasets.get(args.dataset).source is not None:
        return
    missing = [f for f in flags if getattr(args, f.lstrip("-").replace("-", "_")) is None]
    if missing:
        parser.error(
            f"--classifier on {args.dataset} needs {' and '.join(missing)} (the defaults hold "
            "the shipped classifier's results)"
        )


def _bounded(kind: type, low: float, *, strict: bool, high: float | None = None):
    """An argparse ``type`` that parses ``kind`` and refuses values out of range (or NaN),
    so a bad flag fails at parsing, with the flag's name, before any work.

    The range stays on the function (``kind``, ``low``, ``strict``, ``high``: values in
    ``(low, high)`` or ``[low, high)``), so tests can derive the values it must refuse.
    """
    show = (lambda v: f"{v:g}") if kind is float else str
    below = f"> {show(low)}" if strict else f">= {show(low)}"
    opening = "(" if strict else "["
    wanted = below if high is None else f"in {opening}{show(low)}, {show(high)})"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        ok = value > low if strict else value >= low
        if high is not None:
            ok = ok and value < high
        if not ok or value != value or value in (float("inf"), float("-inf")):
            finite = " and finite" if kind is float else ""
            raise argparse.ArgumentTypeError(f"must be {wanted}{finite}, got {text}")
        return value

    parse.__name__ = f"{kind.__name__} {wanted}"
    parse.kind, parse.low, parse.strict, parse.high = kind, low, strict, high
    return parse


positive_int = _bounded(int, 1, strict=False)
nonnegative_int = _bounded(int, 0, strict=False)
positive_float = _bounded(float, 0, strict=True)
nonnegative_float = _bounded(float, 0, strict=False)
fraction = _bounded(float, 0, strict=True, high=1)  # open interval: a drop rate, a share
unit_fraction = _bounded(float, 0, strict=False, high=1)  # [0, 1): momentum, smoothing
mask_count = _bounded(int, 2, strict=False)  # n masks: one mask would hide every pixel
seed = _bounded(int, 0, strict=False, high=2**63)  # what numpy and jax.random.key take
# the attacks' own bounds (remix_jax.attacks.common MAX_SEARCH_STEPS, MAX_ITERATIONS; not
# imported: that imports JAX), checked here so a CLI refuses them before loading anything
search_steps = _bounded(int, 1, strict=False, high=100 + 1)
attack_iterations = _bounded(int, 1, strict=False, high=1_000_000 + 1)
# defend's mask-inpaint rounds K (remix_jax.defense.MAX_ROUNDS) and the EOT draws and
# restarts of the randomized attacks (attacks.adaptive.MAX_SAMPLES, apgd.MAX_RESTARTS)
rounds = _bounded(int, 1, strict=False, high=1000 + 1)
draws = _bounded(int, 1, strict=False, high=1000 + 1)


def initial_const_value(text: str) -> float | str:
    """``--initial-const``: a positive number, or "linear" (each example's first c from
    its linearised margin, :func:`remix_jax.attacks.common.linear_initial_const`).

    Declares :data:`positive_float`'s range, so the CLI tests try its edges."""
    if text == "linear":
        return text
    try:
        return positive_float(text)
    except argparse.ArgumentTypeError as error:
        raise argparse.ArgumentTypeError(f"{error} (or 'linear')") from None


for _name in ("kind", "low", "strict", "high"):  # positive_float's range, not a copy of it
    setattr(initial_const_value, _name, getattr(positive_float, _name))
