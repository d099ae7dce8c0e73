"""Every command line (issue 35): a bad flag exits non-zero with one line naming it,
never a traceback, and before any work starts; so does an output it cannot write.

The tools are found, not listed: every module under eval/, train/ and bench/ that
defines ``main`` is a command line, and its parser is read by running ``main`` until
it calls ``ArgumentParser.parse_args`` (replaced by a capture), so a new tool is
covered as soon as it exists. Bad values come from each option's declared domain: the
ranges of the :mod:`remix_jax.cli` types (``positive_int``, ``fraction``, ...; their
edges always, more drawn by hypothesis), non-numbers for ``int`` / ``float``, values
outside ``choices``, missing folders for :func:`remix_jax.cli.existing_folder` and
dataset sources. A plain ``int`` / ``float`` option fails a test of its own: it
declares no range. Outputs (``--out`` prefixes, ``--checkpoint-dir`` folders) are
given as a path under a file, an existing folder where a file prefix is expected (a
file where a folder is), an uncreatable and a read-only folder. Loading data or
weights, training, any XLA compilation and running past a time limit count as work:
reaching one with a bad value fails the test.
"""

from __future__ import annotations

import argparse
import ast
import functools
import importlib
import os
import signal
import string
import time
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from reliability import reliable

from remix_jax import cli

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("eval", "train", "bench")
PARSE_SECONDS = 5.0  # a parse error: milliseconds; generous for a loaded 2-core CPU
CHECK_SECONDS = 30.0  # an output check: after a trainer's imports (optax, orbax, flax)
# what starts real work: reaching any of these with a bad value fails the test, and so
# does an XLA compilation or running past the time limit (a tool that calls none of them)
WORK = (
    ("remix_jax.data", "load_split"),
    ("remix_jax.data", "load"),
    ("remix_jax.pretrained", "load_pretrained"),
    ("remix_jax.pretrained", "load_classifier"),
    ("remix_jax.pretrained", "load_magnet"),
    ("remix_jax.pretrained", "load_autoencoder"),
    ("remix_jax.pretrained", "restore_autoencoder"),
    ("remix_jax.training", "fit"),
    ("bench.common", "setup"),
)
# options a tool writes to: --out names a file prefix (or a file), the others a folder
OUTPUT_FILES = ("--out",)
OUTPUT_FOLDERS = ("--checkpoint-dir",)
WRITES_INTO = {"eval.sweep": ("--cache-dir",)}  # read-only elsewhere (eval.detector ...)
# numeric options left without a declared range, with the reason; keep this empty
UNRANGED: dict[tuple[str, str], str] = {}


def discover() -> list[str]:
    """Every module under eval/, train/, bench/ with a top-level ``main``: a command line."""
    found = []
    for package in PACKAGES:
        for path in sorted((REPO / package).glob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            if any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body):
                found.append(f"{package}.{path.stem}")
    return found


CLIS = discover()


class _Parsing(Exception):
    """Raised where ``main`` parses its command line; carries the parser."""

    def __init__(self, parser: argparse.ArgumentParser):
        super().__init__("parsing")
        self.parser = parser


@functools.cache
def parser_of(name: str) -> argparse.ArgumentParser:
    """The parser ``name.main`` builds, captured where it calls ``parse_args`` (nothing
    else runs). ``parse_args``, not ``parse_known_args``: that one ignores a mistyped
    flag, a silently wrong run."""

    def capture(self, args=None, namespace=None):
        raise _Parsing(self)

    main = importlib.import_module(name).main
    with mock.patch.object(argparse.ArgumentParser, "parse_args", capture):
        try:
            main(["--help"])
        except _Parsing as parsing:
            return parsing.parser
        except SystemExit as e:
            raise AssertionError(f"{name}.main exits ({e}) without calling parse_args") from e
    raise AssertionError(f"{name}.main returned without parsing a command line with argparse")


def flag(action: argparse.Action) -> str:
    return max(action.option_strings, key=len)


def valued_options(name: str) -> list[argparse.Action]:
    """The options of ``name`` that take a value (not --help, not on/off switches)."""
    return [a for a in parser_of(name)._actions if a.option_strings and a.nargs != 0]


def base_argv(name: str) -> list[str]:
    """The shortest valid command line: each required option's first choice."""
    argv = []
    for action in valued_options(name):
        if action.required:
            assert action.choices, f"{name} {flag(action)}: no valid value to start from"
            argv += [flag(action), str(next(iter(action.choices)))]
    return argv


# ---- bad values from an option's declared domain --------------------------------------


def _parses(kind: type, text: str) -> bool:
    try:
        kind(text)
    except ValueError:
        return False
    return True


def _not_a(kind: type):
    """Text that ``kind`` (int or float) cannot parse."""
    words = st.text(string.ascii_letters + string.digits + ",.+-_", min_size=1, max_size=6)
    words = words.filter(lambda t: t != "--")
    # not "--": argparse (< 3.13) reads --flag=-- as no value at all, whatever the type
    fixed = st.sampled_from(["", "ten", "1,5", "0x10", "1e", "-"])
    return (fixed | words).filter(lambda t: not _parses(kind, t))


def _out_of_range(parse):
    """Numbers outside the range of a :mod:`remix_jax.cli` type, and non-numbers."""
    kind, low, strict, high = parse.kind, parse.low, parse.strict, parse.high
    if kind is int:
        numbers = st.integers(max_value=low if strict else low - 1)
        if high is not None:
            numbers |= st.integers(min_value=high, max_value=high + 2**70)
        others = st.sampled_from(["1.5", "nan", "inf", "1e3"])
        return numbers.map(str) | others | _not_a(kind)
    numbers = st.floats(max_value=low, exclude_max=not strict, allow_nan=False)
    if high is not None:
        numbers |= st.floats(min_value=high, allow_nan=False)
    others = st.sampled_from(["nan", "inf", "-inf", "NaN"])
    return numbers.map(repr) | others | _not_a(kind)


def _missing_paths(tmp: Path):
    """Paths that do not exist, or are a file: never a folder to read."""
    a_file = tmp / "a-file"
    a_file.write_text("not a folder")
    names = st.text(string.ascii_letters + string.digits + "-_", min_size=1, max_size=8)
    return names.map(lambda n: str(tmp / "no-such" / n)) | st.just(str(a_file))


def _is_dataset_type(kind) -> bool:
    return getattr(kind, "__module__", "") == "remix_jax.cli" and kind.__name__ == "dataset"


def domain(action: argparse.Action) -> str | None:
    """What ``action`` declares about its values: "choices", "range" (a
    :mod:`remix_jax.cli` range type), "number" (plain int / float), "folder" (one to
    read) or None (a free string, a tool's own type: nothing says what is bad)."""
    kind = action.type
    if action.choices is not None:
        return "choices"
    if hasattr(kind, "kind") and hasattr(kind, "low"):
        return "range"
    if kind in (int, float):
        return "number"
    if kind is cli.existing_folder or _is_dataset_type(kind):
        return "folder"
    return None


def bad_values(action: argparse.Action, tmp: Path):
    """A strategy for values ``action`` must refuse, from its declared domain."""
    what = domain(action)
    if what == "choices":
        allowed = {str(c) for c in action.choices}
        text = st.text(string.ascii_letters + string.digits + "-_+ ", max_size=12)
        return text.filter(lambda t: t not in allowed)
    if what == "range":
        return _out_of_range(action.type)
    if what == "number":
        return _not_a(action.type)
    return _missing_paths(tmp)


def edges(action: argparse.Action, tmp: Path) -> list[str]:
    """The bad values every run tries first, whatever hypothesis draws: the range's edges
    (just outside each end), the non-finite floats, an empty value."""
    what, kind = domain(action), action.type
    if what == "choices":
        return ["", f"x{next(iter(action.choices))}"]
    if what == "number":
        return ["", "ten"]
    if what == "folder":
        return [str(tmp / "no-such"), str(tmp / "a-file")]
    values = ["", str(kind.low) if kind.strict else str(kind.low - 1)]
    if kind.high is not None:
        values.append(str(kind.high))
    values += ["nan", "inf", "-inf"] if kind.kind is float else ["1.5"]
    return values


def cases() -> list:
    """(tool, option) for every option with a declared domain; a tool whose parser
    cannot be read becomes one case that fails with the reason."""
    params = []
    for name in CLIS:
        try:
            actions = valued_options(name)
        except Exception:
            params.append(pytest.param(name, "<parser>", id=f"{name} <parser>"))
            continue
        for action in actions:
            if domain(action) is not None:
                params.append(pytest.param(name, flag(action), id=f"{name} {flag(action)}"))
    return params


# ---- running a tool ---------------------------------------------------------------------


class StartedWork(BaseException):
    """Raised by the stubbed loaders, trainers and XLA compiler, and at the time limit; a
    BaseException, so that no tool's ``except Exception`` turns it into an error line."""


@pytest.fixture
def no_work(monkeypatch, tmp_path):
    """No data, weights, training or compilation; JAX's settings left alone; the run in
    ``tmp_path`` (so the tools' default outputs land there, not in the checkout)."""
    for module, attribute in WORK:

        def refuse(*args, _what=f"{module}.{attribute}", **kwargs):
            raise StartedWork(_what)

        monkeypatch.setattr(importlib.import_module(module), attribute, refuse)
    from jax._src import compiler  # private, but the one door of every XLA compilation

    def compiles(*args, **kwargs):
        raise StartedWork("an XLA compilation")

    monkeypatch.setattr(compiler, "compile_or_get_cached", compiles, raising=False)
    from remix_jax import runtime

    monkeypatch.setattr(runtime, "configure", lambda *a, **k: "")
    monkeypatch.setattr(runtime, "use_full_precision", lambda *a, **k: None)
    monkeypatch.setenv("REMIX_JAX_CPU_FLAGS", "0")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(name: str, argv: list[str], capsys, limit: float) -> tuple[int, str, str, float]:
    """(exit status, stdout, stderr, seconds) of ``name.main(argv)`` as a shell would
    see them (a ``sys.exit("message")`` prints the message to stderr, status 1); stopped
    after ``limit`` seconds."""
    main = importlib.import_module(name).main
    capsys.readouterr()

    def too_long(signum, frame):
        raise StartedWork(f"still running after {limit:g} s")

    previous = signal.signal(signal.SIGALRM, too_long)
    signal.setitimer(signal.ITIMER_REAL, limit)
    started = time.perf_counter()
    code: object = 0
    try:
        main(argv)
    except SystemExit as e:
        code = e.code
    except StartedWork as e:
        pytest.fail(f"{name} {argv}: started work ({e}) instead of refusing the value")
    except Exception as e:  # a traceback where one line was due
        pytest.fail(f"{name} {argv}: raised {type(e).__name__}: {e}")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    seconds = time.perf_counter() - started
    out, err = capsys.readouterr()
    if isinstance(code, str):
        err, code = err + code + "\n", 1
    return code or 0, out, err, seconds


def assert_one_line_error(name, argv, names, result, limit):
    """Non-zero, no traceback, fast, stderr's last line an error naming one of ``names``."""
    code, out, err, seconds = result
    assert code != 0, f"{name} {argv}: accepted (exit 0)"
    assert "Traceback" not in out + err, f"{name} {argv}: a traceback\n{err}"
    last = err.strip().splitlines()[-1] if err.strip() else ""
    assert "error:" in last, f"{name} {argv}: the last line is no error: {last!r}"
    assert any(n in last for n in names), f"{name} {argv}: {last!r} names none of {names}"
    assert seconds < limit, f"{name} {argv}: {seconds:.1f} s to refuse"


# ---- the tests --------------------------------------------------------------------------


def test_every_command_line_is_found_and_parses_with_argparse():
    from test_cli import COMMANDS  # the hand-kept list of the --help test

    assert set(COMMANDS) <= set(CLIS), set(COMMANDS) - set(CLIS)
    for name in CLIS:
        assert isinstance(parser_of(name), argparse.ArgumentParser)


@pytest.mark.parametrize("name", CLIS)
def test_help_exits_zero_with_usage_at_once(name, capsys, no_work):
    code, out, err, seconds = run(name, ["--help"], capsys, PARSE_SECONDS)
    assert code == 0 and out.startswith("usage:"), (code, out[:200], err[-500:])
    assert "Traceback" not in out + err
    assert seconds < PARSE_SECONDS, f"{name} --help took {seconds:.1f} s"


@pytest.mark.parametrize("name", CLIS)
def test_every_numeric_option_declares_its_range(name):
    """A plain ``int`` / ``float`` takes any number, so a zero, negative, NaN or huge
    value passes parsing and fails (or silently misleads) later: each numeric option
    declares its range with a :mod:`remix_jax.cli` type instead."""
    plain = [
        flag(a)
        for a in valued_options(name)
        if a.type in (int, float) and (name, flag(a)) not in UNRANGED
    ]
    assert not plain, f"{name}: {plain} take any number; use a remix_jax.cli range type"


@pytest.mark.parametrize("name, option", cases())
def test_a_bad_value_exits_with_one_line_naming_the_option(name, option, capsys, no_work):
    parser = parser_of(name)  # raises for a "<parser>" case
    action = next(a for a in valued_options(name) if flag(a) == option)
    strategy = bad_values(action, no_work)
    base = base_argv(name)
    parser.parse_args(base)  # the base is valid: any error comes from the drawn value

    @reliable(8)
    @given(value=strategy)
    def refused(value):
        argv = [*base, f"{option}={value}"]
        result = run(name, argv, capsys, PARSE_SECONDS)
        assert_one_line_error(name, argv, action.option_strings, result, PARSE_SECONDS)

    for value in edges(action, no_work):
        refused = example(value=value)(refused)
    refused()


def _output_cases() -> list:
    params = []
    for name in CLIS:
        flags = {flag(a) for a in valued_options(name)}
        for option in OUTPUT_FILES + OUTPUT_FOLDERS + WRITES_INTO.get(name, ()):
            if option not in flags:
                continue
            folder = option not in OUTPUT_FILES
            for case in ("under a file", "existing", "uncreatable", "read-only"):
                params.append(
                    pytest.param(name, option, folder, case, id=f"{name} {option} {case}")
                )
    return params


@pytest.mark.parametrize("name, option, folder, case", _output_cases())
def test_an_unwritable_output_fails_before_any_work(name, option, folder, case, capsys, no_work):
    a_file = no_work / "a-file"
    a_file.write_text("x")
    if case == "under a file":
        path = a_file / "out"
    elif case == "existing":  # a folder where a file prefix goes, a file where a folder
        path = a_file if folder else no_work
    elif case == "uncreatable":
        path = Path("/proc/remix-no-such/out")
    else:
        locked = no_work / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        if os.access(locked, os.W_OK):  # root writes anyway: nothing to refuse
            pytest.skip("this user can write into a read-only folder (root)")
        path = locked / "out"
    argv = [*base_argv(name), option, str(path)]
    result = run(name, argv, capsys, CHECK_SECONDS)
    assert_one_line_error(name, argv, [option], result, CHECK_SECONDS)


def test_the_attack_budget_types_match_the_attacks_own_bounds():
    from remix_jax.attacks import common

    assert cli.search_steps.high - 1 == common.MAX_SEARCH_STEPS
    assert cli.attack_iterations.high - 1 == common.MAX_ITERATIONS
    from remix_jax import defense
    from remix_jax.attacks.adaptive import MAX_SAMPLES
    from remix_jax.attacks.apgd import MAX_RESTARTS

    assert cli.rounds.high - 1 == defense.MAX_ROUNDS
    assert cli.draws.high - 1 == MAX_SAMPLES == MAX_RESTARTS


RANGES = [name for name in dir(cli) if hasattr(getattr(cli, name), "low")]


@pytest.mark.parametrize("name", RANGES)
def test_the_range_types_accept_what_they_declare(name):
    """The other side of the bad values: each range type takes every value in its range
    (else refusing the drawn values would prove nothing)."""
    kind = getattr(cli, name)
    high = kind.high if kind.high is not None else kind.low + 10**6
    if kind.kind is int:
        inside = st.integers(kind.low + kind.strict, high - 1)
    else:
        inside = st.floats(kind.low, high, exclude_min=kind.strict, exclude_max=True)

    @reliable(20)
    @given(value=inside)
    def accepted(value):
        assert kind(repr(value)) == value

    accepted()
