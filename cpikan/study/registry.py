"""The ablation registry: each ablation varies one toggle (DESIGN §3) through named variants.

A variant is only the dotted overrides it changes on top of the plain Scaled-cPIKAN baseline;
the first variant of every ablation is that baseline, named ``baseline``, with no overrides.
Problems and seeds are per profile: quick stays lean (the whole study in minutes on a CPU),
full is wide.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from cpikan import problems as registry
from cpikan.config import PROFILES, ConfigError, RunConfig

BASELINE = "baseline"
GOALS = ("rel_l2", "time_per_epoch_ms", "wall_time_s", "peak_mem_mb")


@dataclass(frozen=True)
class Variant:
    """One arm of an ablation: a name (a folder name) and the dotted overrides of the baseline.

    `cuda_only` variants (fp16) are skipped, without a run file, when the runs are on a CPU;
    a variant runs only in `profiles` (torch.compile spends a minute compiling: not in smoke).
    """

    name: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    cuda_only: bool = False
    profiles: tuple[str, ...] = PROFILES


@dataclass(frozen=True)
class Ablation:
    """One toggle's study.

    Args:
        name: notebook ``notebooks/ablations/<name>.ipynb`` and results folder.
        keys: the config keys its variants change (the report shows one column per key).
        variants: baseline first, then the variants.
        problems: profile -> problems it runs on.
        seeds: profile -> seeds per (variant, problem).
        goal: what a winner minimizes in the recommended-settings table: ``rel_l2``, or a cost
            (``time_per_epoch_ms``, ``wall_time_s``, ``peak_mem_mb``) among accurate-enough variants.
        story: one line: what the ablation shows.
    """

    name: str
    keys: tuple[str, ...]
    variants: tuple[Variant, ...]
    problems: Mapping[str, tuple[str, ...]]
    seeds: Mapping[str, int]
    goal: str = "rel_l2"
    story: str = ""

    def __post_init__(self) -> None:
        if not self.variants or self.variants[0].name != BASELINE or self.variants[0].overrides:
            raise ConfigError(f"ablation {self.name!r}: the first variant must be {BASELINE!r} with no overrides")
        if self.goal not in GOALS:
            raise ConfigError(f"ablation {self.name!r}: goal={self.goal!r} is not valid; "
                              f"choose one of {', '.join(GOALS)}")
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names) or any(not n or "/" in n or n.startswith(".") for n in names):
            raise ConfigError(f"ablation {self.name!r}: variant names {names} must be unique folder names")
        for profile in PROFILES:
            if not self.problems.get(profile) or self.seeds.get(profile, 0) < 1:
                raise ConfigError(f"ablation {self.name!r} needs problems and seeds for profile {profile!r}")
            for problem in self.problems[profile]:
                registry.check(problem)

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise ConfigError(f"ablation {self.name!r} has no variant {name!r}; valid: "
                          f"{', '.join(v.name for v in self.variants)}")


def _ablation(name: str, keys: tuple[str, ...], variants: Mapping[str, Mapping[str, Any]],
              smoke: Sequence[str], quick: Sequence[str], full: Sequence[str],
              seeds: tuple[int, int, int] = (1, 1, 3), goal: str = "rel_l2", story: str = "",
              cuda_only: Sequence[str] = (), not_in_smoke: Sequence[str] = ()) -> Ablation:
    """An Ablation from compact registry data: a baseline plus `variants` (name -> overrides),
    problems for the smoke, quick and full profiles, seeds in the same order."""
    arms = (Variant(BASELINE),) + tuple(
        Variant(n, dict(o), n in cuda_only, PROFILES[1:] if n in not_in_smoke else PROFILES)
        for n, o in variants.items())
    return Ablation(name, keys, arms, dict(zip(PROFILES, (tuple(smoke), tuple(quick), tuple(full)))),
                    dict(zip(PROFILES, seeds)), goal, story)


_SINGLE = [
    _ablation("grad_clip", ("train.grad_clip",),
              {"max_norm_10": {"train.grad_clip": 10.0}, "max_norm_1": {"train.grad_clip": 1.0}},
              ["poisson1d"], ["poisson1d", "helmholtz2d"], ["poisson1d", "helmholtz2d", "allen_cahn1d"],
              story="how often clipping acts (pre-clip gradient norm) and what it does to accuracy"),
    _ablation("amp", ("train.amp",),
              {"bf16": {"train.amp": "bf16"}, "fp16": {"train.amp": "fp16"}},
              ["helmholtz2d"], ["helmholtz2d"], ["helmholtz2d", "poisson3d"],
              goal="time_per_epoch_ms", cuda_only=("fp16",),
              story="time per epoch and peak memory in mixed precision, at what cost in accuracy"),
    _ablation("early_stopping", ("train.early_stopping",),
              {"patience_200": {"train.early_stopping": {"patience": 200}},
               "patience_1000": {"train.early_stopping": {"patience": 1000}}},
              ["poisson1d"], ["poisson1d", "reaction_diffusion1d"],
              ["poisson1d", "helmholtz2d", "reaction_diffusion1d"],
              goal="wall_time_s", story="epochs and wall time saved, and the accuracy given up"),
    _ablation("loss_balancing", ("loss.balancing",),
              {"gradnorm": {"loss.balancing": "gradnorm"}, "lra": {"loss.balancing": "lra"}},
              ["reaction_diffusion1d_inverse"], ["reaction_diffusion1d_inverse"],
              ["reaction_diffusion1d_inverse", "helmholtz2d", "allen_cahn1d"],
              story="loss-term weights over training, and whether balancing them helps"),
    _ablation("adaptive_sampling", ("sampling.adaptive",),
              {"rar": {"sampling.adaptive": "rar"}, "rad": {"sampling.adaptive": "rad"}},
              ["helmholtz2d"], ["poisson1d"], ["allen_cahn1d", "helmholtz2d"],
              story="where residual-based sampling puts the collocation points"),
    _ablation("batching", ("sampling.batches",),
              {"minibatch_4": {"sampling.batches": {"count": 4}},
               "patches_4": {"sampling.batches": {"count": 4, "mode": "patches"}},
               "resample": {"sampling.batches": {"count": 1, "resample": True}}},
              ["helmholtz2d"], ["helmholtz2d"], ["helmholtz2d", "poisson3d"],
              story="points per second, and fitting the function rather than a fixed point set"),
    _ablation("scheduler", ("train.scheduler",),
              {s: {"train.scheduler": s} for s in ("exponential", "cosine", "plateau", "multistep")},
              ["poisson1d"], ["poisson1d"], ["poisson1d", "helmholtz2d", "diffusion1d"],
              story="learning-rate curves and the accuracy each schedule reaches"),
    _ablation("init", ("model.init",),
              {s: {"model.init": s} for s in ("kaiming", "orthogonal", "small_random")},
              ["poisson1d"], ["poisson1d", "allen_cahn1d"], ["poisson1d", "helmholtz2d", "allen_cahn1d"],
              seeds=(1, 1, 5),
              story="the coefficient scale each initialization gives, and the accuracy it leads to"),
    _ablation("derivatives", ("derivatives", "train.compile"),
              {"taylor": {"derivatives": "taylor"},
               "taylor_compiled": {"derivatives": "taylor", "train.compile": True}},
              ["poisson3d"], ["poisson3d", "diffusion1d"], ["poisson3d", "helmholtz2d", "diffusion1d"],
              goal="time_per_epoch_ms", not_in_smoke=("taylor_compiled",),
              story="milliseconds per training step against the number of points"),
    _ablation("architecture", ("model.arch",),
              {a: {"model.arch": a} for a in ("cpikan", "scaled_pinn", "pinn")},
              ["poisson1d"], ["helmholtz2d"],
              ["poisson1d", "helmholtz2d", "diffusion1d", "reaction_diffusion1d", "allen_cahn1d"],
              story="the paper's comparison: Scaled-cPIKAN vs cPIKAN vs Scaled-PINN vs PINN"),
]

# The improvements switched on together in `combined`, picked from the quick study's recommended
# settings: clipping at 10 and small_random init won on poisson1d, taylor halved the time per epoch.
# lra, rad and cosine made helmholtz2d worse at quick sizes (0.87 with all five vs 0.031 without lra).
CHOSEN: dict[str, Any] = {"train.grad_clip": 10.0, "model.init": "small_random", "derivatives": "taylor"}


def _combined() -> Ablation:
    by_key = {a.keys[0]: a.name for a in _SINGLE}
    variants = {"all": CHOSEN} | {f"without_{by_key[key]}": {k: v for k, v in CHOSEN.items() if k != key}
                                  for key in CHOSEN}
    return _ablation("combined", tuple(CHOSEN), variants, ["helmholtz2d"], ["helmholtz2d"],
                     ["helmholtz2d", "allen_cahn1d", "reaction_diffusion1d_inverse"],
                     story="all chosen improvements on, and each one left out (jaxpi-style table)")


ABLATIONS: dict[str, Ablation] = {a.name: a for a in [*_SINGLE, _combined()]}

# Every key some ablation varies, in registry order: the toggle columns of the report.
TOGGLES: tuple[str, ...] = tuple(dict.fromkeys(k for a in ABLATIONS.values() for k in a.keys))


def variant_label(ablation: str, variant: str, single: bool) -> str:
    """How a variant is named in tables and legends: qualified by its ablation unless `single`."""
    return BASELINE if variant == BASELINE else (variant if single else f"{ablation}/{variant}")


def names() -> list[str]:
    return list(ABLATIONS)


def get(name: str) -> Ablation:
    """The registered ablation `name`; ConfigError listing the valid names otherwise."""
    if name not in ABLATIONS:
        raise ConfigError(f"unknown ablation {name!r}; valid: {', '.join(ABLATIONS)}")
    return ABLATIONS[name]


def variant_config(ablation: Ablation, variant: Variant, problem: str, profile: str = "smoke", seed: int = 0,
                   device: str = "auto", threads: int | None = None) -> RunConfig:
    """The run config of one variant: the plain baseline of `problem` plus the variant's overrides."""
    base = RunConfig(problem=problem, profile=profile, seed=seed, device=device, threads=threads)
    return base.override(dict(variant.overrides))


def plan(profile: str) -> list[dict]:
    """What a study of `profile` runs: per ablation its problems, variants, seeds, run count, and
    `work` = sum over runs of (Adam epochs + L-BFGS iterations) x interior points (a rough cost,
    for ordering a batch)."""
    rows = []
    for a in ABLATIONS.values():
        n_runs = sum(profile in v.profiles for v in a.variants) * a.seeds[profile]
        sizes = [registry.get(p).sizes.get(profile, {}) for p in a.problems[profile]]
        work = sum(n_runs * (s.get("train.epochs", 0) + s.get("train.lbfgs_iterations", 0))
                   * s.get("sampling.n_pde", 0) for s in sizes)
        rows.append({"ablation": a.name, "problems": ", ".join(a.problems[profile]),
                     "variants": ", ".join(v.name for v in a.variants if profile in v.profiles),
                     "seeds": a.seeds[profile],
                     "runs": n_runs * len(sizes), "work": work})
    return rows
