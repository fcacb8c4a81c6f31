"""The ablation registry: each ablation varies one toggle (DESIGN §3) through named variants.

A variant is only the dotted overrides it changes on top of the ablation's baseline; the first
variant of every ablation is that baseline, named ``baseline``, with no overrides. The baseline
is the plain Scaled-cPIKAN unless the ablation states a `base` setup (overrides per profile,
e.g. a published setup that a reproduction follows).
Problems and seeds are per profile: quick stays lean (the whole study in minutes on a CPU),
full is wide. Each ablation says `why` its problems: where its toggle has something to act on.
Seeds are 0 .. n-1 for every arm, so arms are paired: an arm that changes neither the network
nor the point counts starts from the baseline's weights and points.
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
        title: the notebook's heading, ``Ablation: <title> (<keys>)``.
        intro: the notebook's opening paragraph (markdown): what the toggle does, what the figure shows.
        figure: the notebook's figure cell, a call into `cpikan.study.figures` on ``runs``.
        story: one line, what the ablation shows: the heading above the figure.
        why: why these problems: what the toggle has to act on there (and, where the quick
            profile has a single problem, why only one).
        stage: the group it belongs to in the report (the plan's stage, e.g. ``1 stability``).
        base: profile -> overrides every arm starts from (empty: the plain Scaled-cPIKAN).
        sizes: profile -> variant name -> size overrides (epochs, points, rounds) of that arm alone,
            applied after its overrides: for arms that train for different lengths, as a published
            protocol may have them. A variant's overrides say what it is; its sizes, how long.
    The notebook is rendered from these fields (`cpikan.study.notebooks`; ``cpikan study render``).
    """

    name: str
    keys: tuple[str, ...]
    variants: tuple[Variant, ...]
    problems: Mapping[str, tuple[str, ...]]
    seeds: Mapping[str, int]
    goal: str = "rel_l2"
    title: str = ""
    intro: str = ""
    figure: str = ""
    story: str = ""
    why: str = ""
    stage: str = ""
    base: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    sizes: Mapping[str, Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.variants or self.variants[0].name != BASELINE or self.variants[0].overrides:
            raise ConfigError(f"ablation {self.name!r}: the first variant must be {BASELINE!r} with no overrides")
        missing = [k for k in ("title", "intro", "figure", "story", "why") if not getattr(self, k)]
        if missing:
            raise ConfigError(f"ablation {self.name!r} needs {', '.join(missing)} for its notebook")
        if not self.stage:
            raise ConfigError(f"ablation {self.name!r} needs a stage, its group in the report (e.g. '1 stability')")
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
        for label, table in (("base", self.base), ("sizes", self.sizes)):
            unknown = set(table) - set(PROFILES)
            if unknown:
                raise ConfigError(f"ablation {self.name!r}: {label} has unknown profiles {sorted(unknown)}; "
                                  f"valid: {', '.join(PROFILES)}")
        for by_arm in self.sizes.values():
            for arm in by_arm:
                self.variant(arm)

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise ConfigError(f"ablation {self.name!r} has no variant {name!r}; valid: "
                          f"{', '.join(v.name for v in self.variants)}")


def _ablation(name: str, keys: tuple[str, ...], variants: Mapping[str, Mapping[str, Any]],
              smoke: Sequence[str], quick: Sequence[str], full: Sequence[str],
              *, title: str, intro: str, figure: str, story: str, why: str, stage: str,
              seeds: tuple[int, int, int] = (1, 10, 20),
              goal: str = "rel_l2", cuda_only: Sequence[str] = (), not_in_smoke: Sequence[str] = (),
              base: Mapping[str, Mapping[str, Any]] | None = None) -> Ablation:
    """An Ablation from compact registry data: a baseline plus `variants` (name -> overrides),
    problems for the smoke, quick and full profiles, seeds in the same order, and the notebook's text."""
    arms = (Variant(BASELINE),) + tuple(
        Variant(n, dict(o), n in cuda_only, PROFILES[1:] if n in not_in_smoke else PROFILES)
        for n, o in variants.items())
    return Ablation(name, keys, arms, dict(zip(PROFILES, (tuple(smoke), tuple(quick), tuple(full)))),
                    dict(zip(PROFILES, seeds)), goal, title, intro, figure, story, why, stage, dict(base or {}))


_SINGLE = [
    _ablation("grad_clip", ("train.grad_clip",),
              {"max_norm_10": {"train.grad_clip": 10.0}, "max_norm_1": {"train.grad_clip": 1.0}},
              ["poisson1d"], ["poisson1d", "helmholtz2d"], ["poisson1d", "helmholtz2d", "allen_cahn1d"],
              why="clipping acts where gradients are large: at initialization the pre-clip norm is about 2e7 "
                  "on poisson1d and 8e4 on helmholtz2d (still 5e5 and 6e3 after 50 epochs), far above both "
                  "max norms.",
              stage="1 stability",
              title="gradient clipping",
              intro="`train.grad_clip` scales the whole gradient down to a maximum L2 norm before the optimizer step "
                    "(after unscaling under fp16). The run history logs the *pre-clip* norm every epoch, so the "
                    "figure shows how often, and by how much, clipping acted: wherever a curve lies above a "
                    "variant's max norm.",
              figure='figures.curves(runs, "grad_norm", title="pre-clip gradient norm (clipping acts above the max '
                     'norm)")',
              story="how often clipping acts (pre-clip gradient norm) and what it does to accuracy"),
    _ablation("amp", ("train.amp",),
              {"bf16": {"train.amp": "bf16"}, "fp16": {"train.amp": "fp16"}},
              ["helmholtz2d"], ["helmholtz2d", "poisson1d"], ["helmholtz2d", "poisson3d"],
              goal="time_per_epoch_ms", cuda_only=("fp16",),
              why="precision acts on every problem; these two have the largest second derivatives relative to"
                  " u ((4 pi)^2 on both), which bf16's 8-bit mantissa carries least well.",
              stage="1 stability",
              title="mixed precision",
              intro="`train.amp` autocasts the Adam phase's forward pass (network, derivatives, condition terms) to "
                    "bf16 or fp16; the optimizer step, L-BFGS and the evaluation stay in full precision. `fp16` "
                    "needs CUDA and is skipped on a CPU. The figure compares time per epoch and peak memory (CUDA: "
                    "max allocated; CPU: peak RSS) with the accuracy reached.",
              figure='figures.bars(runs, ["time_per_epoch_ms", "peak_mem_mb", "rel_l2"])',
              story="time per epoch and peak memory in mixed precision, at what cost in accuracy"),
    _ablation("early_stopping", ("train.early_stopping",),
              {"patience_200": {"train.early_stopping": {"patience": 200}},
               "patience_1000": {"train.early_stopping": {"patience": 1000}}},
              ["poisson1d"], ["poisson1d", "reaction_diffusion1d"],
              ["poisson1d", "helmholtz2d", "reaction_diffusion1d"],
              goal="wall_time_s",
              why="early stopping acts where the monitor plateaus, which none of the quick problems does within a "
                  "quick budget: measured at seed 0, the held-out residual of poisson1d and reaction_diffusion1d "
                  "kept improving through 1000 Adam epochs at lr 1e-3 and at 1e-2 and through 3000 at 1e-3 (it "
                  "only stalled with 32 to 100 collocation points, where neither problem is solved). Quick "
                  "therefore measures what watching costs, on the two cheapest problems; full's 20000 Adam "
                  "epochs are where it can stop early.",
              stage="1 stability",
              title="early stopping",
              intro="`train.early_stopping` stops when the monitored value (`train.monitor`: by default the PDE residual "
                    "on held-out points, every `train.monitor_every` = 10 epochs) has not improved for `patience` epochs, and restores the best weights. The figure "
                    "shows the epochs and wall time each variant used, and the accuracy it kept.",
              figure='figures.bars(runs, ["epochs_run", "wall_time_s", "rel_l2"])',
              story="epochs and wall time saved, and the accuracy given up"),
    _ablation("loss_balancing", ("loss.balancing",),
              {"gradnorm": {"loss.balancing": "gradnorm"}, "lra": {"loss.balancing": "lra"}},
              ["reaction_diffusion1d_inverse"], ["reaction_diffusion1d_inverse", "helmholtz2d"],
              ["reaction_diffusion1d_inverse", "helmholtz2d", "allen_cahn1d"],
              why="balancing acts where the terms are unbalanced: at initialization the weighted PDE term is "
                  "120x to 400x the initial, boundary and data terms of the inverse problem, and 160x the "
                  "boundary term of helmholtz2d (whose boundary weight of 100 was set by hand for that "
                  "reason).",
              stage="2 loss and sampling",
              title="loss balancing",
              intro="`loss.balancing` replaces the fixed weights of the loss terms (PDE, boundary, initial, data) "
                    "with weights driven by the terms' gradients: `gradnorm` (Chen et al. 2018) or `lra`, "
                    "learning-rate annealing (Wang, Teng & Perdikaris 2021). The figure shows each term's weight "
                    "over training.",
              figure='figures.curves(runs, ["pde_weight", "bc_weight", "ic_weight", "data_weight"], '
                     'title="loss-term weights")',
              story="loss-term weights over training, and whether balancing them helps"),
    _ablation("adaptive_sampling", ("sampling.adaptive",),
              {"rar": {"sampling.adaptive": "rar"}, "rad": {"sampling.adaptive": "rad"}},
              ["poisson1d_peak"], ["poisson1d_peak"], ["poisson1d_peak", "allen_cahn1d"],
              why="residual-based sampling needs local features to move points to: poisson1d_peak is flat but "
                  "for one narrow peak, and allen_cahn1d (full) forms sharp interfaces, the benchmark of Wu et "
                  "al. (2023). Quick has only poisson1d_peak: one allen_cahn1d baseline run at one seed took 167 s, "
                  "more than poisson1d_peak's three arms at ten seeds together (79 s in the quick study), and the "
                  "other quick problems are smooth sines and sums of sines.",
              stage="2 loss and sampling",
              title="adaptive collocation",
              intro="`sampling.adaptive` moves collocation points to where the residual is large: `rar` adds points "
                    "above a residual percentile, `rad` resamples the whole set with probability growing with the "
                    "residual. The figure shows the point cloud each variant ended with (runs trained in this "
                    "kernel only).",
              figure="figures.point_clouds(runs)",
              story="where residual-based sampling puts the collocation points"),
    _ablation("batching", ("sampling.batches",),
              {"minibatch_4": {"sampling.batches": {"count": 4}},
               "patches_4": {"sampling.batches": {"count": 4, "mode": "patches"}},
               "resample": {"sampling.batches": {"count": 1, "resample": True}}},
              ["helmholtz2d"], ["poisson1d"], ["helmholtz2d", "poisson3d"],
              why="batching acts on any point set (poisson1d: 256 points, patches are sub-intervals). Quick has "
                  "only this one: a helmholtz2d arm of ten seeds cost 117 s on average in the quick study, and "
                  "the two four-step arms cost about twice the baseline's (49 s a run against 22 s at one seed), "
                  "about 10 more minutes for a study already past its 20; full has helmholtz2d and poisson3d.",
              stage="2 loss and sampling",
              title="batched collocation",
              intro="`sampling.batches` splits the collocation points into mini-batches or spatial patches, several "
                    "optimizer steps per epoch, or resamples uniform points every epoch (fitting the function rather "
                    "than one fixed point set). The figure shows the points processed per second and the accuracy.",
              figure='figures.bars(runs, ["points_per_s", "rel_l2"])',
              story="points per second, and fitting the function rather than a fixed point set"),
    _ablation("scheduler", ("train.scheduler",),
              {s: {"train.scheduler": s} for s in ("exponential", "cosine", "plateau", "multistep")},
              ["poisson1d"], ["poisson1d"], ["poisson1d", "helmholtz2d", "diffusion1d"],
              why="a schedule acts through the Adam phase: on poisson1d the training loss still falls by about "
                  "15 % over the last 100 of the 1000 Adam epochs (measured at seed 0), so the rate there still "
                  "matters. Quick has only this one: five helmholtz2d arms of ten seeds (117 s each on average in "
                  "the quick study) would add about 10 minutes to a study already past its 20; full adds "
                  "helmholtz2d and diffusion1d.",
              stage="3 convergence and cost",
              title="learning-rate schedulers",
              intro="`train.scheduler` changes the Adam learning rate over training (`train.scheduler_params` holds "
                    "each schedule's parameters; defaults here). `plateau` watches the same quantity as early "
                    "stopping. The figure shows the learning rate each schedule produced.",
              figure='figures.curves(runs, "lr", title="learning rate")',
              story="learning-rate curves and the accuracy each schedule reaches"),
    _ablation("init", ("model.init",),
              {s: {"model.init": s} for s in ("kaiming", "orthogonal", "small_random")},
              ["poisson1d"], ["poisson1d", "helmholtz2d"], ["poisson1d", "helmholtz2d", "allen_cahn1d"],
              why="the initial scale acts everywhere: in the last quick study the four schemes spread 30x on "
                  "poisson1d (kaiming 1.6e-3, small_random 4.6e-5); helmholtz2d adds a 2-D problem. Where it "
                  "decides success, allen_cahn1d (u = 0 is a solution; kaiming and orthogonal 0.96 and 0.98 "
                  "against xavier's 0.14), a run costs about ten poisson1d runs: full has it, quick has not.",
              stage="3 convergence and cost",
              title="initialization",
              intro="`model.init` sets the scale of the Chebyshev coefficients (and of the MLP weights): xavier (the "
                    "paper's code), kaiming, orthogonal or small_random. The figure shows the standard deviation of "
                    "each layer's coefficients at initialization (solid) and, for runs trained in this kernel, after "
                    "training (dashed).",
              figure="figures.coefficient_scales(runs)",
              story="the coefficient scale each initialization gives, and the accuracy it leads to"),
    _ablation("derivatives", ("derivatives", "train.compile"),
              {"taylor": {"derivatives": "taylor"},
               "taylor_compiled": {"derivatives": "taylor", "train.compile": True}},
              ["poisson3d"], ["poisson3d"], ["poisson3d", "helmholtz2d", "diffusion1d"],
              goal="time_per_epoch_ms", not_in_smoke=("taylor_compiled",),
              base={p: {"derivatives": "autograd"} for p in PROFILES},
              why="the engine's cost grows with the dimension and the number of points: a 3-D Laplacian on "
                  "1500 points (poisson3d), where nested autograd needs a backward per axis. Quick has only "
                  "this one: a second problem (poisson1d, three arms of ten seeds, about 20 s each in the quick "
                  "study, and a compile of 45 to 87 s for the compiled arm) would add about 2 minutes to a study "
                  "already past its 20; full adds helmholtz2d and diffusion1d.",
              stage="3 convergence and cost",
              title="derivative engine",
              intro="`derivatives` picks how the residual's derivatives are computed: nested `autograd` (this "
                    "ablation's baseline, its `base` setup), or `taylor` (values, gradients and second derivatives "
                    "propagated forward through the network, then one ordinary backward; the default everywhere "
                    "else), optionally wrapped in `torch.compile` (`train.compile`; not in the smoke "
                    "profile, as compiling takes about a minute). The numbers should agree; the cost should not. "
                    "The figure shows milliseconds per training epoch against the number of collocation points.",
              figure="figures.cost_vs_points(runs)",
              story="milliseconds per training step against the number of points"),
    _ablation("architecture", ("model.arch",),
              {a: {"model.arch": a} for a in ("cpikan", "scaled_pinn", "pinn")},
              ["poisson1d"], ["helmholtz2d", "diffusion1d"],
              ["poisson1d", "helmholtz2d", "diffusion1d", "reaction_diffusion1d", "allen_cahn1d"],
              why="the paper's own comparisons: Helmholtz and the diffusion case. On helmholtz2d's square "
                  "[-1, 1]^2 the domain scaling is the identity, so there cpikan is scaled_cpikan and pinn is "
                  "scaled_pinn, run for run (a check); diffusion1d's domain is where the scaling acts.",
              stage="architecture",
              title="architecture",
              intro="The paper's comparison (`model.arch`): Scaled-cPIKAN (domain scaling, then Chebyshev KAN "
                    "layers) against cPIKAN (no domain scaling), Scaled-PINN (tanh MLP after the same scaling) and "
                    "PINN. Same widths, same training. The figure shows the training loss (median over seeds, "
                    "min–max band).",
              figure='figures.curves(runs, "loss", title="training loss")',
              story="the paper's comparison: Scaled-cPIKAN vs cPIKAN vs Scaled-PINN vs PINN"),
]

# The improvements switched on together in `combined`, picked from the quick study's recommended
# settings: clipping at 10 and small_random init won on poisson1d. taylor, which halved the time per
# epoch, is now the default engine, so every arm has it. lra, rad and cosine made helmholtz2d worse
# at quick sizes (0.87 with all five vs 0.031 without lra), measured before lra and rad followed
# their authors' code (see README, stage-2 verdicts).
CHOSEN: dict[str, Any] = {"train.grad_clip": 10.0, "model.init": "small_random"}


def _combined() -> Ablation:
    by_key = {a.keys[0]: a.name for a in _SINGLE}
    variants = {"all": CHOSEN} | {f"without_{by_key[key]}": {k: v for k, v in CHOSEN.items() if k != key}
                                  for key in CHOSEN}
    return _ablation("combined", tuple(CHOSEN), variants, ["helmholtz2d"], ["helmholtz2d"],
                     ["helmholtz2d", "allen_cahn1d", "reaction_diffusion1d_inverse"],
                     why="the chosen settings were picked on poisson1d; they are judged on a problem they were not "
                         "picked on. Quick has only helmholtz2d: a second problem (reaction_diffusion1d, four arms "
                         "of ten seeds at about 67 s each in the quick study) would add about 4.5 minutes to a "
                         "study already past its 20.",
                     stage="combined",
                     title="combined improvements",
                     intro="All chosen improvements on (`cpikan.study.CHOSEN`), then each one left out, against the "
                           "plain baseline: a jaxpi-style table with one column per toggle. The figure shows the "
                           "relative L2 error of each row.",
                     figure='figures.bars(runs, ["rel_l2"], log_y=True)',
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
    return lookup(ABLATIONS, "ablation", name)


def lookup(table: Mapping[str, Ablation], kind: str, name: str) -> Ablation:
    """``table[name]``; ConfigError naming the `kind` and the valid names otherwise."""
    if name not in table:
        raise ConfigError(f"unknown {kind} {name!r}; valid: {', '.join(table)}")
    return table[name]


def variant_config(ablation: Ablation, variant: Variant, problem: str, profile: str = "smoke", seed: int = 0,
                   device: str = "auto", threads: int | None = None) -> RunConfig:
    """The run config of one variant: the ablation's baseline of `problem` (its `base` setup for
    `profile` over the plain Scaled-cPIKAN), the variant's overrides, then its `sizes` for `profile`."""
    plain = RunConfig(problem=problem, profile=profile, seed=seed, device=device, threads=threads)
    sizes = ablation.sizes.get(profile, {}).get(variant.name, {})
    return plain.override(dict(ablation.base.get(profile, {})), dict(variant.overrides), dict(sizes))


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
