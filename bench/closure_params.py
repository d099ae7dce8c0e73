"""Closure or params + apply: what jitting a classifier with its weights baked in costs.

    python -m bench.closure_params [--batch 100] [--repeats 5]

The attacks and the scoring take the classifier as ``logits_fn``, a closure over its
weights, jitted as a static argument (its weights become constants of the compiled
program); the alternative passes the weights as a traced argument (params + apply).
This times, for each shipped classifier, the compile and the run of its logits and of
their gradient w.r.t. the images (what an attack step computes) both ways, on the same
batch. Writes results/bench/closure_params_<backend>.{json,md}.
"""

from __future__ import annotations

import statistics
import time

from bench import common
from remix_jax import datasets


def measure(ways: dict, repeats: int) -> dict:
    """For each name -> (fn, args): seconds to lower + compile ``jax.jit(fn)`` and the
    median of its runs, the ways' runs interleaved so that a load on the machine
    weighs on each alike."""
    import jax

    compiled, out = {}, {}
    for name, (fn, args) in ways.items():
        started = time.perf_counter()
        compiled[name] = jax.jit(fn).lower(*args).compile()
        out[name] = {"compile_seconds": round(time.perf_counter() - started, 3)}
        jax.block_until_ready(compiled[name](*args))  # warm
    runs = {name: [] for name in ways}
    for _ in range(repeats):
        for name, (_, args) in ways.items():
            started = time.perf_counter()
            jax.block_until_ready(compiled[name](*args))
            runs[name].append(time.perf_counter() - started)
    for name in ways:
        out[name]["run_seconds"] = round(statistics.median(runs[name]), 5)
    return out


def one_dataset(dataset: str, batch: int, repeats: int) -> list[dict]:
    """The four timings (logits / gradient, closure / params) of one shipped classifier."""
    import jax
    import numpy as np

    from remix_jax.models.classifiers import as_variables
    from remix_jax.pretrained import load_classifier

    model, params = load_classifier(dataset)
    shape = (batch, *datasets.get(dataset).image_shape)
    x = jax.numpy.asarray(np.random.default_rng(0).uniform(size=shape), jax.numpy.float32)

    def apply(p, z):
        return model.apply(as_variables(p), z)

    def closure(z):
        return apply(params, z)

    ways = {"closure": (closure, (x,)), "params + apply": (apply, (params, x))}
    rows = []
    for what in ("logits", "gradient"):
        # the gradient w.r.t. the images, the last argument, as an attack step takes it
        fns = {
            kind: (f if what == "logits" else jax.grad(lambda *a, f=f: f(*a).sum(), len(args) - 1),
                   args)
            for kind, (f, args) in ways.items()
        }  # fmt: skip
        for kind, timing in measure(fns, repeats).items():
            rows.append({"dataset": dataset, "computes": what, "model": kind, "batch": batch,
                         **timing})  # fmt: skip
    return rows


def markdown(result: dict) -> str:
    lines = [
        "# Closure or params + apply (bench.closure_params)",
        "",
        f"`{result['command']}` on {result['machine']}",
        "",
        "| dataset | computes | model | batch | compile (s) | run (s, median) |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['dataset']} | {r['computes']} | {r['model']} | {r['batch']} "
            f"| {r['compile_seconds']:.2f} | {r['run_seconds']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = common.parser(__doc__)
    p.add_argument("--batch", type=common.positive_int, default=100, help="images per call")
    p.add_argument("--repeats", type=common.positive_int, default=20, help="timed runs of each")
    common.add_out_flag(p, "results/bench/closure_params_<backend>.json")
    args = p.parse_args(argv)
    common.configure(full_precision=True)
    from remix_jax import provenance, result_files

    started = time.time()
    out = common.result_path(args.out, "results/bench/closure_params_<backend>.json")
    rows = [r for d in ("mnist", "cifar10") for r in one_dataset(d, args.batch, args.repeats)]
    result = {"rows": rows, **provenance.finished(started)}
    common.write_json(out, result)
    result_files.write_text(out[: -len(".json")] + ".md", markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
