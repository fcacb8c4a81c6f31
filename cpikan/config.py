"""RunConfig: every setting of a run, the rules its values follow, and dotted overrides.

A config has scalar run settings (problem, profile, seed, ...) and four sections (`model`,
`train`, `loss`, `sampling`). Defaults are the paper's plain Scaled-cPIKAN: every improvement
is off. Its derivatives come from the `taylor` engine, the same numbers as nested autograd (to
float rounding) in less time; the derivatives ablation keeps autograd as its baseline. What a
value must be is stated once, where it is declared:
  - a field's metadata: ``choices`` (a toggle's choices equal its module's registry keys),
    ``rule`` (a `Rule` that any value but None passes), ``from_problem`` (None means that the
    problem and the profile decide, see `resolve`; ``fallback`` when they do not);
  - a dict field's parameter tables in `PARAMS`: one table per option of the choice field named
    by ``params_for``, or a single ``"*"`` table for a struct toggle (None when off); each entry
    is a `Param` (type, default, rule, choices);
  - `validate`: the rules between fields.
Reading values from text and writing them back: `cpikan.overrides`.
"""

from __future__ import annotations

import contextvars
import dataclasses
import typing
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Mapping, NamedTuple, TypeVar

from cpikan import overrides

PROFILES = ("smoke", "quick", "full")
LOSS_TERMS = ("pde", "bc", "ic", "data")
DEFAULT_DEGREE = 5  # the paper's Chebyshev degree K
T = TypeVar("T")
_VALIDATING: contextvars.ContextVar[bool] = contextvars.ContextVar("cpikan_validating", default=True)


class ConfigError(ValueError):
    """A bad key or value: the message names it and lists the valid choices."""


class Rule(NamedTuple):
    """A value rule: `holds(value)` is True for a valid value; an error says "must be <text>"."""

    holds: Callable[[Any], bool]
    text: str


class Param(NamedTuple):
    """One parameter of a dict field's table: its type, default, rule and valid values."""

    type: type
    default: Any
    rule: Rule | None = None
    choices: tuple | None = None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


POSITIVE = Rule(lambda v: v > 0, "positive")
NON_NEGATIVE = Rule(lambda v: v >= 0, ">= 0")
SHARE = Rule(lambda v: 0 < v <= 1, "in (0, 1]")
WIDTHS = Rule(lambda h: len(h) > 0 and min(h) > 0, "a non-empty list of positive widths")
WEIGHTS = Rule(lambda w: all(t in LOSS_TERMS and _number(v) and v >= 0 for t, v in w.items()),
               f"a weight >= 0 per term, terms among {', '.join(LOSS_TERMS)}")
DEVICE = Rule(lambda d: d in ("auto", "cpu", "cuda") or d.startswith("cuda:"), "'auto', 'cpu', 'cuda' or 'cuda:N'")
MILESTONES = Rule(lambda v: all(_number(m) and m > 0 for m in v),
                  "a list of numbers > 0 (epochs after warm-up, or fractions < 1 of them)")


def _field(default: Any, help: str, **checks: Any) -> Any:
    """A dataclass field whose metadata holds its `help` and `checks` (see the module docstring)."""
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata={"help": help, **checks})
    return field(default=default, metadata={"help": help, **checks})


def _sized(help: str, rule: Rule, fallback: Any = None) -> Any:
    """A size or recipe value that the problem and the profile decide while it is None."""
    return _field(None, help, rule=rule, from_problem=True, fallback=fallback)


@dataclass(frozen=True)
class ModelConfig:
    arch: str = _field("scaled_cpikan", "network: Chebyshev KAN with/without domain scaling, or a tanh MLP "
                       "with/without it", choices=("scaled_cpikan", "cpikan", "scaled_pinn", "pinn"))
    hidden: tuple[int, ...] | None = _sized("hidden widths, e.g. [8, 8]; None: the problem/profile decides", WIDTHS)
    degree: int | None = _sized(f"Chebyshev degree K (K+1 basis functions per input); None: the problem/profile "
                                f"decides, {DEFAULT_DEGREE} (the paper's) unless it says otherwise", POSITIVE,
                                fallback=DEFAULT_DEGREE)
    norm: str = _field("none", "squash between layers: tanh, or LayerNorm then tanh", choices=("none", "layernorm"))
    init: str = _field("xavier", "initialization of Chebyshev coefficients / linear weights",
                       choices=("xavier", "kaiming", "orthogonal", "small_random"))
    standardize: bool = _field(False, "inputs standardized, (x - mean) / std of the uniform law on the box (the "
                               "box to [-sqrt 3, sqrt 3]), in place of model.arch's domain scaling or where it "
                               "has none, as Wang et al.'s code does")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int | None = _sized("Adam epochs; None: the problem/profile decides", POSITIVE)
    lr: float = _field(1e-3, "Adam learning rate", rule=POSITIVE)
    lbfgs_iterations: int | None = _sized("L-BFGS iterations after Adam (0: none)", NON_NEGATIVE, fallback=0)
    lbfgs_float64: bool = _field(False, "run the L-BFGS phase in float64 rather than the run's dtype (measured on "
                                 "the quick problems: float32 as accurate, its iterations 1.1-2x faster)")
    grad_clip: float | None = _field(None, "max global L2 norm of the gradient; None: no clipping", rule=POSITIVE)
    amp: str = _field("none", "autocast the Adam phase (fp16 uses a GradScaler)", choices=("none", "bf16", "fp16"))
    early_stopping: dict | None = _field(None, "None, or {patience, min_delta}: stop when train.monitor stalls")
    scheduler: str = _field("none", "learning-rate schedule of the Adam phase",
                            choices=("none", "exponential", "cosine", "plateau", "multistep"))
    scheduler_params: dict = _field({}, "parameters of the chosen scheduler", params_for="train.scheduler")
    monitor: str = _field("heldout", "the value early stopping and the plateau schedule watch: the PDE residual "
                          "on held-out points, or the training loss", choices=("heldout", "loss"))
    monitor_every: int = _field(10, "epochs between evaluations of train.monitor (when something watches it)",
                                rule=POSITIVE)
    compile: bool = _field(False, "wrap the training step in torch.compile (taylor engine only)")
    log_every: int = _field(10, "record history every this many epochs (and on every scored epoch); the training "
                            "loop reads its values back from the device only then", rule=POSITIVE)
    eval_every: int = _field(10, "Adam epochs, and L-BFGS iterations, between scorings of the history's rel_l2 on the "
                             "evaluation subset (each phase's last row is scored too); the scoring's time is left "
                             "out of every training time", rule=POSITIVE)
    eval_points: int = _field(1024, "size of the evaluation subset: points drawn once from the problem's evaluation "
                              "set with a fixed seed, the same for every run seed and variant (all of it when "
                              "smaller)", rule=POSITIVE)


@dataclass(frozen=True)
class LossConfig:
    weights: dict | None = _field(None, "fixed or initial weight per term (pde, bc, ic, data); None: the problem's",
                                  rule=WEIGHTS, from_problem=True)
    balancing: str = _field("fixed", "loss-weighting strategy", choices=("fixed", "gradnorm", "lra"))
    balancing_params: dict = _field({}, "parameters of the chosen balancing strategy", params_for="loss.balancing")


@dataclass(frozen=True)
class SamplingConfig:
    n_pde: int | None = _sized("collocation points in the interior", POSITIVE)
    n_bc: int | None = _sized("points on the boundary faces (all faces together)", NON_NEGATIVE, fallback=0)
    n_ic: int | None = _sized("points on the initial slice (time-dependent problems)", NON_NEGATIVE, fallback=0)
    adaptive: str = _field("none", "residual-based adaptive collocation", choices=("none", "rar", "rad"))
    adaptive_params: dict = _field({}, "parameters of the chosen adaptive scheme", params_for="sampling.adaptive")
    batches: dict | None = _field(None, "None, or {count, mode, resample, resample_conditions}: several mini-batches "
                                  "per epoch; fresh interior points, and fresh condition points, every epoch")


@dataclass(frozen=True)
class RunConfig:
    problem: str = _field("poisson1d", "registered problem name (see cpikan.problems.names())")
    profile: str = _field("smoke", "size profile: smoke (CI), quick (CPU minutes), full (GPU)", choices=PROFILES)
    seed: int = _field(0, "seed of weights and sampled points")
    device: str = _field("auto", "'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N'", rule=DEVICE)
    dtype: str = _field("float32", "parameter and point precision", choices=("float32", "float64"))
    derivatives: str = _field("taylor", "derivative engine: forward-propagated through the cpikan network (taylor; "
                              "the same numbers to float rounding, in less time), or nested autograd (any callable)",
                              choices=("autograd", "taylor"))
    threads: int | None = _field(None, "torch CPU threads for this run; None: leave torch's setting", rule=POSITIVE)
    problem_params: dict = _field({}, "keyword arguments of the problem factory (e.g. noise, domain_scale)")
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)

    def __post_init__(self) -> None:
        if _VALIDATING.get():
            validate(self)

    def override(self, *items: str | Mapping[str, Any]) -> "RunConfig":
        """Return a new config with dotted overrides applied: ``"train.grad_clip=1.0"`` or a mapping."""
        return apply_overrides(self, *items)

    def get(self, key: str) -> Any:
        """Value at a dotted key, e.g. ``cfg.get("train.amp")``."""
        return get_value(self, key)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RunConfig":
        """Inverse of `to_dict` (as read back from JSON), validated."""
        flat = dict(_flatten(data))
        return apply_overrides(cls(problem=data.get("problem", "poisson1d")), flat)


SECTIONS = {"model": ModelConfig, "train": TrainConfig, "loss": LossConfig, "sampling": SamplingConfig}

WARMUP = Param(int, 0, NON_NEGATIVE)  # epochs of linear warm-up before any schedule
# Adam epochs before an adaptive sampler's first refinement; None: as many as between two refinements
FIRST_REFINEMENT = Param(int, None, POSITIVE)
PARAMS: dict[str, dict[str, dict[str, Param]]] = {
    "train.early_stopping": {
        "*": {"patience": Param(int, 500, POSITIVE), "min_delta": Param(float, 0.0, NON_NEGATIVE)},
    },
    "train.scheduler_params": {
        "none": {},
        "exponential": {"gamma": Param(float, 0.999, POSITIVE), "warmup": WARMUP},
        "cosine": {"eta_min": Param(float, 0.0, NON_NEGATIVE), "warmup": WARMUP},
        "plateau": {"factor": Param(float, 0.5, Rule(lambda v: 0 < v < 1, "in (0, 1)")),
                    "patience": Param(int, 100, POSITIVE),
                    "threshold": Param(float, 1e-4, Rule(lambda v: 0 <= v < 1, "in [0, 1)")),
                    "min_lr": Param(float, 1e-6, NON_NEGATIVE), "warmup": WARMUP},
        "multistep": {"milestones": Param(list, [0.5, 0.75], MILESTONES), "gamma": Param(float, 0.1, POSITIVE),
                      "warmup": WARMUP},
    },
    "loss.balancing_params": {
        "fixed": {},
        "gradnorm": {"alpha": Param(float, 1.5, NON_NEGATIVE), "lr": Param(float, 0.025, POSITIVE),
                     "every": Param(int, 1, POSITIVE)},
        "lra": {"keep": Param(float, 0.9, Rule(lambda v: 0 <= v < 1, "in [0, 1)")), "every": Param(int, 10, POSITIVE)},
    },
    "sampling.adaptive_params": {
        "none": {},
        "rar": {"rounds": Param(int, 3, POSITIVE), "candidates": Param(int, 100000, POSITIVE),
                "ratio": Param(float, 0.2, SHARE),
                "percentile": Param(float, 75.0, Rule(lambda v: 0 <= v < 100, "in [0, 100)")),
                "start": FIRST_REFINEMENT},
        "rad": {"rounds": Param(int, 5, POSITIVE), "candidates": Param(int, 100000, POSITIVE),
                "k": Param(float, 1.0, NON_NEGATIVE), "c": Param(float, 1.0, NON_NEGATIVE),
                "start": FIRST_REFINEMENT},
    },
    "sampling.batches": {
        "*": {"count": Param(int, 4, POSITIVE), "mode": Param(str, "minibatch", choices=("minibatch", "patches")),
              "resample": Param(bool, False), "resample_conditions": Param(bool, False)},
    },
}


def pick(registry: Mapping[str, T], key: str, choice: str) -> T:
    """``registry[choice]``, or a ConfigError naming `key` and `choice` and listing the registry's keys."""
    _check(key, choice, tuple(registry), None)
    return registry[choice]


def check_profile(profile: Any, name: str = "profile") -> str:
    """`profile` when it is one of `PROFILES`; otherwise a ConfigError naming `name` and listing them."""
    _check(name, profile, PROFILES, None)
    return profile


# ---------------------------------------------------------------- access

def all_keys() -> list[str]:
    """Every settable dotted key, in schema order."""
    keys = [f.name for f in fields(RunConfig) if f.name not in SECTIONS]
    for section, cls in SECTIONS.items():
        keys += [f"{section}.{f.name}" for f in fields(cls)]
    return keys


def schema() -> list[dict[str, Any]]:
    """One entry per key: key, type annotation (str), default, choices, help, from_problem, its
    `PARAMS` tables, and ``params_for``: the choice key whose value selects the table (None for ``"*"``)."""
    rows = []
    for key in all_keys():
        owner, f = _lookup_field(key)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        rows.append({"key": key, "type": str(_hints(owner)[f.name]), "default": default,
                     "choices": f.metadata.get("choices"), "help": f.metadata["help"],
                     "from_problem": f.metadata.get("from_problem", False),
                     "params": PARAMS.get(key), "params_for": f.metadata.get("params_for")})
    return rows


def get_value(cfg: RunConfig, key: str) -> Any:
    _lookup_field(key)
    obj: Any = cfg
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def params(cfg: RunConfig, key: str) -> dict[str, Any]:
    """Full parameter dict of a dict-valued field: the given values over the table's defaults.

    ``params(cfg, "train.scheduler_params")`` -> e.g. ``{"gamma": 0.999, "warmup": 0}``.
    Returns ``{}`` for a struct toggle that is off (None).
    """
    value = get_value(cfg, key)
    if value is None:
        return {}
    return {name: value.get(name, param.default) for name, param in _param_table(cfg, key).items()}


def _param_table(cfg: RunConfig, key: str) -> dict[str, Param]:
    tables = PARAMS[key]
    if "*" in tables:
        return tables["*"]
    return tables[get_value(cfg, _field_meta(key)["params_for"])]


def _field_meta(key: str) -> Mapping[str, Any]:
    return _lookup_field(key)[1].metadata


def _lookup_field(key: str) -> tuple[type, dataclasses.Field]:
    parts = key.split(".")
    owner: type = RunConfig
    if parts[0] in SECTIONS and len(parts) >= 2:
        owner, parts = SECTIONS[parts[0]], parts[1:]
    by_name = {f.name: f for f in fields(owner) if f.name not in SECTIONS}
    if len(parts) != 1 or parts[0] not in by_name:
        raise ConfigError(f"unknown config key {key!r}; valid keys: {', '.join(all_keys())}")
    return owner, by_name[parts[0]]


def _hints(owner: type) -> dict[str, Any]:
    return typing.get_type_hints(owner)


# ---------------------------------------------------------------- overrides

def set_value(cfg: RunConfig, key: str, value: Any) -> RunConfig:
    """New config with `key` set to `value` (coerced to the field's type), validated."""
    owner, f = _lookup_field(key)
    value = _coerce(key, _hints(owner)[f.name], value)
    if "." in key:
        section, name = key.split(".")
        return replace(cfg, **{section: replace(getattr(cfg, section), **{name: value})})
    return replace(cfg, **{key: value})


def apply_overrides(cfg: RunConfig, *items: str | Mapping[str, Any]) -> RunConfig:
    """Apply ``"key=value"`` strings and/or ``{key: value}`` mappings, left to right.

    A key may reach inside a dict field: ``"train.scheduler_params.gamma=0.99"``. Each value is
    coerced to its field's type as it is set; the rules are checked once, on the result, so the
    order of the overrides does not matter.
    """
    token = _VALIDATING.set(False)
    try:
        for key, value in _pairs(items):
            head, sub = _split_subkey(key)
            if sub is not None:
                current = dict(get_value(cfg, head) or {})
                current[sub] = overrides.parse_literal(value) if isinstance(value, str) else value
                value = current
            cfg = set_value(cfg, head, value)
    finally:
        _VALIDATING.reset(token)
    validate(cfg)
    return cfg


def _pairs(items: tuple[str | Mapping[str, Any], ...]) -> list[tuple[str, Any]]:
    pairs: list[tuple[str, Any]] = []
    for item in items:
        if isinstance(item, Mapping):
            pairs += list(item.items())
            continue
        try:
            pairs.append(overrides.split(item))
        except ValueError as err:
            raise ConfigError(str(err)) from None
    return pairs


def _split_subkey(key: str) -> tuple[str, str | None]:
    parts = key.split(".")
    if len(parts) == 3 or (len(parts) == 2 and parts[0] not in SECTIONS):
        head = ".".join(parts[:-1])
        owner, f = _lookup_field(head)
        hint = _hints(owner)[f.name]
        if hint is not dict and dict not in typing.get_args(hint):
            raise ConfigError(f"{head!r} is not a dict field; cannot set {key!r}")
        return head, parts[-1]
    return key, None


def _coerce(key: str, hint: Any, value: Any) -> Any:
    try:
        return overrides.coerce(hint, value)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{key}={value!r} is not valid: expected {_describe(hint)} ({err})") from None


def _describe(hint: Any) -> str:
    if overrides.is_optional(hint):
        inner = next(a for a in typing.get_args(hint) if a is not type(None))
        return f"{_describe(inner)} or None"
    return getattr(hint, "__name__", str(hint))


def _flatten(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for key, value in data.items():
        if key in SECTIONS and not prefix:
            out += _flatten(value, f"{key}.")
        else:
            out.append((prefix + key, value))
    return out


# ---------------------------------------------------------------- validation

def validate(cfg: RunConfig) -> None:
    """Every field's choices and rule, every dict field's parameters, then the rules between
    fields; raises ConfigError naming the bad value."""
    for key in all_keys():
        meta = _field_meta(key)
        _check(key, get_value(cfg, key), meta.get("choices"), meta.get("rule"))
    for key in PARAMS:
        _check_params(cfg, key)
    if cfg.loss.balancing != "fixed":
        for term, weight in (cfg.loss.weights or {}).items():
            if not weight > 0:
                raise ConfigError(f"loss.weights.{term}={weight} must be > 0 with loss.balancing="
                                  f"{cfg.loss.balancing!r}; use loss.balancing='fixed' to switch a term off")
    if cfg.train.compile and cfg.derivatives != "taylor":
        raise ConfigError(f"train.compile=True needs derivatives='taylor', not {cfg.derivatives!r}: nested autograd "
                          "differentiates twice (double backward), which torch.compile cannot compile; set "
                          "derivatives=taylor, or train.compile=false")


def _check(label: str, value: Any, choices: tuple | None, rule: Rule | None, where: str = "") -> None:
    if choices is not None and value not in choices:
        raise ConfigError(f"{label}={value!r} is not valid{where}; choose one of {', '.join(map(repr, choices))}")
    if rule is not None and value is not None and not _holds(rule, value):
        raise ConfigError(f"{label}={value!r} is not valid{where}: must be {rule.text}")


def _holds(rule: Rule, value: Any) -> bool:
    try:
        return bool(rule.holds(value))
    except TypeError:  # a value of another type, given to the dataclass directly rather than by `override`
        return False


def _check_params(cfg: RunConfig, key: str) -> None:
    value = get_value(cfg, key)
    if value is None:
        return
    table = _param_table(cfg, key)
    selector = _field_meta(key).get("params_for")
    where = f" for {selector}={get_value(cfg, selector)!r}" if selector else ""
    for name, given in value.items():
        if name not in table:
            raise ConfigError(f"{key} has no parameter {name!r}{where}; valid: {', '.join(table) or '(none)'}")
        param = table[name]
        if not _is_type(given, param.type):
            raise ConfigError(f"{key}.{name}={given!r} is not valid{where}: expected {param.type.__name__}")
        _check(f"{key}.{name}", given, param.choices, param.rule, where)


def _is_type(value: Any, kind: type) -> bool:
    if kind is float:
        return _number(value)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


# ---------------------------------------------------------------- resolution and comparison

def resolve(cfg: RunConfig, problem: Any) -> RunConfig:
    """Fill every ``from_problem`` field left at None from the problem's sizes for the profile.

    Loss weights merge: the problem's weights, then the config's (the config wins); a term
    with neither gets 1.0. A size the problem does not give takes the field's ``fallback``
    (0 L-BFGS iterations and initial points, `DEFAULT_DEGREE`), or is an error.
    """
    sizes = dict(problem.sizes.get(cfg.profile, {}))
    if not sizes and problem.sizes:
        raise ConfigError(f"problem {problem.name!r} has no sizes for profile {cfg.profile!r}; "
                          f"it has: {', '.join(problem.sizes)}")
    for key in all_keys():
        meta = _field_meta(key)
        if not meta.get("from_problem") or key == "loss.weights" or get_value(cfg, key) is not None:
            continue
        value = sizes.get(key, meta["fallback"])
        if value is None:
            raise ConfigError(f"{key} is not set and problem {problem.name!r} gives no value for "
                              f"profile {cfg.profile!r}; set it, e.g. --set {key}=...")
        cfg = set_value(cfg, key, value)
    weights = {t: 1.0 for t in problem.terms} | dict(problem.weights) | dict(cfg.loss.weights or {})
    return set_value(cfg, "loss.weights", {t: float(weights[t]) for t in problem.terms})


def diff(a: RunConfig, b: RunConfig) -> dict[str, tuple[Any, Any]]:
    """Keys whose values differ between two configs: key -> (a value, b value)."""
    return {k: (get_value(a, k), get_value(b, k)) for k in all_keys() if get_value(a, k) != get_value(b, k)}
