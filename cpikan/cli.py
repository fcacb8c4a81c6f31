"""The `cpikan` command: run one configuration, list problems and keys, run the study, benchmarks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cpikan import problems
from cpikan.config import PROFILES, ConfigError, RunConfig, schema
from cpikan.metrics import RUN_METRICS
from cpikan.overrides import format_value


def _cmd_run(args: argparse.Namespace) -> int:
    from cpikan.runs import run

    cfg = RunConfig(problem=args.problem, profile=args.profile, seed=args.seed, device=args.device)
    cfg = cfg.override(*args.set)
    result = run(cfg, progress=not args.quiet)
    extra = [k for k in result.metrics if k.endswith("_rel_err") or k in (result.problem.true_unknowns or {})]
    width = max(map(len, RUN_METRICS + tuple(extra)))
    for key in (*RUN_METRICS, *extra):
        value = result.metrics[key]
        print(f"{key:<{width}}  {value:.4g}" if isinstance(value, float) else f"{key:<{width}}  {value}")
    if args.out:
        path = result.save(Path(args.out) / f"{cfg.problem}_seed{cfg.seed}.json")
        print(f"saved {path}")
    return 0


def _cmd_problems(args: argparse.Namespace) -> int:
    for name in problems.names():
        doc = (problems.REGISTRY[name].__doc__ or "").strip().splitlines()[0]
        print(f"{name:<30} {doc}")
    return 0


def _cmd_keys(args: argparse.Namespace) -> int:
    for row in schema():
        choices = f" {{{', '.join(row['choices'])}}}" if row["choices"] else ""
        print(f"{row['key']:<28} default={format_value(row['default'])}{choices}  {row['help']}")
    return 0


def _cmd_study(args: argparse.Namespace) -> int:
    try:
        from cpikan import study
    except ImportError as err:
        raise ConfigError(f"`cpikan study` needs the study extra ({err.name} is missing): "
                          "pip install 'cpikan[study]'") from None

    if args.action != "compare" and args.folders:
        raise ConfigError(f"`cpikan study {args.action}` takes no folders (only compare does)")
    if args.action == "compare":
        if len(args.folders) != 2:
            raise ConfigError("`cpikan study compare` takes two profile folders, e.g. reports/quick other/quick")
        a, b = args.folders
        print(f"A: {a}\nB: {b}\n{study.format_comparison(study.compare_studies(a, b))}")
    elif args.action == "render":
        print("\n".join(study.render_notebooks(only=args.only.split(",") if args.only else None,
                                                execute=args.execute)))
    elif args.action == "reproduce":
        study.run_reproductions(profile=args.profile, only=args.only.split(",") if args.only else None,
                                seeds=args.seeds, jobs=args.jobs, executor=args.executor, address=args.address,
                                root=args.root, first_seed=args.first_seed)
    elif args.action == "run":
        study.run_study(profile=args.profile, only=args.only.split(",") if args.only else None,
                        seeds=args.seeds, jobs=args.jobs, executor=args.executor, address=args.address,
                        root=args.root, first_seed=args.first_seed)
    else:
        path = study.build_report(profile=args.profile, root=args.root)
        print(f"report: {path}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from cpikan import bench

    return bench.main(args.what, device=args.device, points=args.points, repeats=args.repeats, dims=args.dims,
                      smoke=args.smoke, members=args.members, problems=args.problems, epochs=args.epochs,
                      lbfgs=args.lbfgs)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cpikan", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="train one configuration and print its metrics")
    r.add_argument("--problem", required=True, help=f"one of: {', '.join(problems.names())}")
    r.add_argument("--profile", default="quick", choices=PROFILES)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--device", default="auto")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override, repeatable, e.g. --set train.grad_clip=1.0 (see `cpikan keys`)")
    r.add_argument("--out", help="folder to save the run file in")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=_cmd_run)

    sub.add_parser("problems", help="list registered problems").set_defaults(func=_cmd_problems)
    sub.add_parser("keys", help="list config keys, defaults and choices").set_defaults(func=_cmd_keys)

    s = sub.add_parser("study", help="run the ablation notebooks, build the report, run the reproduction notebooks "
                                     "(and write their table), render the notebooks, or compare two studies' verdicts")
    s.add_argument("action", choices=("run", "report", "reproduce", "render", "compare"))
    s.add_argument("folders", nargs="*", metavar="FOLDER",
                   help="compare: two profile folders (<results root>/<profile>, each holding runs/)")
    s.add_argument("--profile", default="quick", choices=PROFILES)
    s.add_argument("--only", help="comma-separated ablation (run, render) or reproduction (reproduce, render) names")
    s.add_argument("--seeds", type=int, help="seeds per arm, trained as one batched run (default: the profile's)")
    s.add_argument("--first-seed", type=int, default=0, help="the seeds are first, first + 1, ... (default 0)")
    s.add_argument("--jobs", type=int, default=1, help="notebooks executed at once")
    s.add_argument("--executor", default="local", choices=("local", "dask"))
    s.add_argument("--address", help="Dask scheduler address (with --executor dask)")
    s.add_argument("--root", default="reports", help="results root (reports/<profile>/ below it)")
    s.add_argument("--execute", action="store_true",
                   help="render: execute each notebook for its checked output, even when it has one")
    s.set_defaults(func=_cmd_study)

    b = sub.add_parser("bench", help="benchmarks that print figures: `derivatives` (engines), `seeds` (batched "
                                     "seeds against separate runs); `gpu` is the device check (tools/gpu-check.sh)")
    b.add_argument("what", choices=("derivatives", "gpu", "seeds"))
    b.add_argument("--device", help="derivatives: default auto; gpu: default cuda, never the CPU unless named")
    b.add_argument("--points", help="derivatives: comma-separated point counts (default 2000,10000,50000)")
    b.add_argument("--dims", help="derivatives: comma-separated input dimensions (default 1,2,3)")
    b.add_argument("--repeats", type=int, help="derivatives: timed steps per cell, median reported (default 10)")
    b.add_argument("--smoke", action="store_true", help="gpu: tiny sizes, seconds (a test of the check itself)")
    b.add_argument("--members", help="seeds: comma-separated seed counts S (default 1,2,4,8,16)")
    b.add_argument("--problems", help="seeds: comma-separated problems (default poisson1d,helmholtz2d,diffusion1d)")
    b.add_argument("--epochs", type=int, help="seeds: Adam epochs per run (default 100)")
    b.add_argument("--lbfgs", type=int, help="seeds: L-BFGS iterations of the whole runs (default 100)")
    b.set_defaults(func=_cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as err:
        print(f"cpikan: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
