"""RunConfig: every setting of a run, validated, with dotted overrides.

A config has scalar run settings (problem, profile, seed, ...) and four sections
(`model`, `train`, `loss`, `sampling`). Defaults are the paper's plain Scaled-cPIKAN:
every improvement is off. Fields whose default is ``None`` *and* whose metadata says
``from_problem`` are sizes or recipe values that the problem and the profile decide
(see `resolve`); an explicit value always wins.

Dict-valued fields (``train.early_stopping``, ``train.scheduler_params`` ...) are
checked against the parameter tables in `PARAMS`: an unknown name is a `ConfigError`
listing the valid ones.
"""

from __future__ import annotations

import contextvars
import dataclasses
import typing
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Mapping

from cpikan import overrides

PROFILES = ("smoke", "quick", "full")
DEFAULT_DEGREE = 5  # the paper's Chebyshev degree K
_VALIDATING: contextvars.ContextVar[bool] = contextvars.ContextVar("cpikan_validating", default=True)


class ConfigError(ValueError):
    """A bad key or value: the message names it and lists the valid choices."""


def _choice(default: str, choices: tuple[str, ...], help: str) -> Any:
    return field(default=default, metadata={"choices": choices, "help": help})


def _opt(default: Any, help: str, **meta: Any) -> Any:
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **meta})
    return field(default=default, metadata={"help": help, **meta})


def _sized(help: str) -> Any:
    return field(default=None, metadata={"help": help, "from_problem": True})


@dataclass(frozen=True)
class ModelConfig:
    arch: str = _choice("scaled_cpikan", ("scaled_cpikan", "cpikan", "scaled_pinn", "pinn"),
                        "network: Chebyshev KAN with/without domain scaling, or a tanh MLP with/without it")
    hidden: tuple[int, ...] | None = _sized("hidden widths, e.g. (8, 8); None: the problem/profile decides")
    degree: int | None = _sized(f"Chebyshev degree K (K+1 basis functions per input); None: the problem/profile "
                                f"decides, {DEFAULT_DEGREE} (the paper's) unless it says otherwise")
    norm: str = _choice("none", ("none", "layernorm"), "squash between layers: tanh, or LayerNorm then tanh")
    init: str = _choice("xavier", ("xavier", "kaiming", "orthogonal", "small_random"),
                        "initialization of Chebyshev coefficients / linear weights")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int | None = _sized("Adam epochs; None: the problem/profile decides")
    lr: float = _opt(1e-3, "Adam learning rate")
    lbfgs_iterations: int | None = _sized("L-BFGS iterations after Adam (0: none)")
    lbfgs_float64: bool = _opt(True, "run the L-BFGS phase in float64 (float32 L-BFGS tends to stop early)")
    grad_clip: float | None = _opt(None, "max global L2 norm of the gradient; None: no clipping")
    amp: str = _choice("none", ("none", "bf16", "fp16"), "autocast the Adam phase (fp16 uses a GradScaler)")
    early_stopping: dict | None = _opt(None, "None, or {patience, min_delta, monitor}", params=True)
    scheduler: str = _choice("none", ("none", "exponential", "cosine", "plateau", "multistep"),
                             "learning-rate schedule of the Adam phase")
    scheduler_params: dict = _opt({}, "parameters of the chosen scheduler", params_for="train.scheduler")
    compile: bool = _opt(False, "wrap the training step in torch.compile (taylor engine only)")
    log_every: int = _opt(1, "record history every this many epochs")


@dataclass(frozen=True)
class LossConfig:
    weights: dict | None = _sized("fixed or initial weight per term (pde, bc, ic, data); None: the problem's")
    balancing: str = _choice("fixed", ("fixed", "gradnorm", "lra"), "loss-weighting strategy")
    balancing_params: dict = _opt({}, "parameters of the chosen balancing strategy", params_for="loss.balancing")


@dataclass(frozen=True)
class SamplingConfig:
    n_pde: int | None = _sized("collocation points in the interior")
    n_bc: int | None = _sized("points on the boundary faces (all faces together)")
    n_ic: int | None = _sized("points on the initial slice (time-dependent problems)")
    adaptive: str = _choice("none", ("none", "rar", "rad"), "residual-based adaptive collocation")
    adaptive_params: dict = _opt({}, "parameters of the chosen adaptive scheme", params_for="sampling.adaptive")
    batches: dict | None = _opt(None, "None, or {count, mode, resample}: several mini-batches per epoch", params=True)


@dataclass(frozen=True)
class RunConfig:
    problem: str = _opt("poisson1d", "registered problem name (see cpikan.problems.names())")
    profile: str = _choice("smoke", PROFILES, "size profile: smoke (CI), quick (CPU minutes), full (GPU)")
    seed: int = _opt(0, "seed of weights and sampled points")
    device: str = _opt("auto", "'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N'")
    dtype: str = _choice("float32", ("float32", "float64"), "parameter and point precision")
    derivatives: str = _choice("autograd", ("autograd", "taylor"),
                               "derivative engine: nested autograd, or forward-propagated (taylor)")
    threads: int | None = _opt(None, "torch CPU threads for this run; None: leave torch's setting")
    problem_params: dict = _opt({}, "keyword arguments of the problem factory (e.g. noise, domain_scale)")
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

# name -> (type or tuple of choices, default). `None` as default means "no default: required".
PARAMS: dict[str, dict[str, dict[str, tuple[Any, Any]]]] = {
    "train.early_stopping": {
        "*": {"patience": (int, 500), "min_delta": (float, 0.0), "monitor": (("heldout", "loss"), "heldout"),
              "every": (int, 10)},
    },
    "train.scheduler_params": {
        "none": {},
        "exponential": {"gamma": (float, 0.999), "warmup": (int, 0)},
        "cosine": {"eta_min": (float, 0.0), "warmup": (int, 0)},
        "plateau": {"factor": (float, 0.5), "patience": (int, 100), "threshold": (float, 1e-4),
                    "min_lr": (float, 1e-6), "warmup": (int, 0)},
        "multistep": {"milestones": (list, [0.5, 0.75]), "gamma": (float, 0.1), "warmup": (int, 0)},
    },
    "loss.balancing_params": {
        "fixed": {},
        "gradnorm": {"alpha": (float, 1.5), "lr": (float, 0.025), "every": (int, 1)},
        "lra": {"alpha": (float, 0.9), "every": (int, 10)},
    },
    "sampling.adaptive_params": {
        "none": {},
        "rar": {"every": (int, 500), "candidates": (int, 10000), "ratio": (float, 0.2),
                "percentile": (float, 75.0), "max_points": (int, 20000)},
        "rad": {"every": (int, 500), "candidates": (int, 10000), "k": (float, 1.0), "c": (float, 1.0)},
    },
    "sampling.batches": {
        "*": {"count": (int, 4), "mode": (("minibatch", "patches"), "minibatch"), "resample": (bool, False)},
    },
}


_POSITIVE = (lambda v: v > 0, "> 0")
_NON_NEGATIVE = (lambda v: v >= 0, ">= 0")
_AT_LEAST_ONE = (lambda v: v >= 1, ">= 1")

# (field, name) or (field, option, name) -> (test, rule stated in the error); the option-specific rule wins.
RULES: dict[tuple[str, ...], tuple[Callable[[Any], bool], str]] = {
    ("train.early_stopping", "patience"): _AT_LEAST_ONE,
    ("train.early_stopping", "min_delta"): _NON_NEGATIVE,
    ("train.early_stopping", "every"): _AT_LEAST_ONE,
    ("train.scheduler_params", "gamma"): _POSITIVE,
    ("train.scheduler_params", "warmup"): _NON_NEGATIVE,
    ("train.scheduler_params", "eta_min"): _NON_NEGATIVE,
    ("train.scheduler_params", "factor"): (lambda v: 0 < v < 1, "in (0, 1)"),
    ("train.scheduler_params", "patience"): _AT_LEAST_ONE,
    ("train.scheduler_params", "threshold"): (lambda v: 0 <= v < 1, "in [0, 1)"),
    ("train.scheduler_params", "min_lr"): _NON_NEGATIVE,
    ("train.scheduler_params", "milestones"): (
        lambda v: all(isinstance(m, (int, float)) and not isinstance(m, bool) and m > 0 for m in v),
        "a list of numbers > 0 (epochs after warm-up, or fractions < 1 of them)"),
    ("loss.balancing_params", "alpha"): _NON_NEGATIVE,
    ("loss.balancing_params", "lra", "alpha"): (lambda v: 0 < v <= 1, "in (0, 1]"),
    ("loss.balancing_params", "lr"): _POSITIVE,
    ("loss.balancing_params", "every"): _AT_LEAST_ONE,
    ("sampling.adaptive_params", "every"): _AT_LEAST_ONE,
    ("sampling.adaptive_params", "candidates"): _AT_LEAST_ONE,
    ("sampling.adaptive_params", "max_points"): _AT_LEAST_ONE,
    ("sampling.adaptive_params", "ratio"): (lambda v: 0 < v <= 1, "in (0, 1]"),
    ("sampling.adaptive_params", "percentile"): (lambda v: 0 <= v < 100, "in [0, 100)"),
    ("sampling.adaptive_params", "k"): _NON_NEGATIVE,
    ("sampling.adaptive_params", "c"): _NON_NEGATIVE,
    ("sampling.batches", "count"): _AT_LEAST_ONE,
}


def params(cfg: RunConfig, key: str) -> dict[str, Any]:
    """Full parameter dict of a dict-valued field: the given values over the table's defaults.

    ``params(cfg, "train.scheduler_params")`` -> e.g. ``{"gamma": 0.999, "warmup": 0}``.
    Returns ``{}`` for a struct toggle that is off (None).
    """
    value = get_value(cfg, key)
    if value is None:
        return {}
    table = _param_table(cfg, key)
    return {name: value.get(name, default) for name, (_, default) in table.items()}


def _param_table(cfg: RunConfig, key: str) -> dict[str, tuple[Any, Any]]:
    tables = PARAMS[key]
    if "*" in tables:
        return tables["*"]
    selector = _field_meta(key)["params_for"]
    return tables[get_value(cfg, selector)]


# ---------------------------------------------------------------- access

def _field_meta(key: str) -> Mapping[str, Any]:
    return _lookup_field(key)[1].metadata


def _lookup_field(key: str) -> tuple[type, dataclasses.Field]:
    parts = key.split(".")
    owner: type = RunConfig
    if parts[0] in SECTIONS and len(parts) >= 2:
        owner, parts = SECTIONS[parts[0]], parts[1:]
    if len(parts) != 1:
        raise ConfigError(f"unknown config key {key!r}; valid keys: {', '.join(all_keys())}")
    by_name = {f.name: f for f in fields(owner) if f.name not in SECTIONS}
    if parts[0] not in by_name:
        raise ConfigError(f"unknown config key {key!r}; valid keys: {', '.join(all_keys())}")
    return owner, by_name[parts[0]]


def all_keys() -> list[str]:
    """Every settable dotted key, in schema order."""
    keys = [f.name for f in fields(RunConfig) if f.name not in SECTIONS]
    for section, cls in SECTIONS.items():
        keys += [f"{section}.{f.name}" for f in fields(cls)]
    return keys


def schema() -> list[dict[str, Any]]:
    """One entry per key: key, type annotation (str), default, choices, help, params tables, and
    ``params_for``: the choice key whose value selects the params table (None for ``"*"`` tables)."""
    rows = []
    for key in all_keys():
        owner, f = _lookup_field(key)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        rows.append({"key": key, "type": str(_hints(owner)[f.name]), "default": default,
                     "choices": f.metadata.get("choices"), "help": f.metadata.get("help", ""),
                     "from_problem": f.metadata.get("from_problem", False),
                     "params": PARAMS.get(key), "params_for": f.metadata.get("params_for")})
    return rows


def _hints(owner: type) -> dict[str, Any]:
    return typing.get_type_hints(owner)


def get_value(cfg: RunConfig, key: str) -> Any:
    _lookup_field(key)
    obj: Any = cfg
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def set_value(cfg: RunConfig, key: str, value: Any) -> RunConfig:
    """New config with `key` set to `value` (coerced to the field's type), validated."""
    owner, f = _lookup_field(key)
    value = _coerce(key, _hints(owner)[f.name], f, value)
    if "." in key:
        section, name = key.split(".")
        return replace(cfg, **{section: replace(getattr(cfg, section), **{name: value})})
    return replace(cfg, **{key: value})


def apply_overrides(cfg: RunConfig, *items: str | Mapping[str, Any]) -> RunConfig:
    """Apply ``"key=value"`` strings and/or ``{key: value}`` mappings, left to right.

    A key may reach inside a dict field: ``"train.scheduler_params.gamma=0.99"``. Each value is
    checked against its field as it is set; cross-field rules are checked once, on the result, so
    the order of the overrides does not matter.
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
        elif isinstance(item, str):
            try:
                pairs.append(overrides.split(item))
            except ValueError as err:
                raise ConfigError(str(err)) from None
        else:
            raise ConfigError(f"override {item!r} is not 'key=value' (e.g. 'train.grad_clip=1.0')")
    return pairs


def _split_subkey(key: str) -> tuple[str, str | None]:
    parts = key.split(".")
    if len(parts) == 3 or (len(parts) == 2 and parts[0] not in SECTIONS):
        head = ".".join(parts[:-1])
        hint = _hints_for(head)
        if hint is not dict and dict not in typing.get_args(hint):
            raise ConfigError(f"{head!r} is not a dict field; cannot set {key!r}")
        return head, parts[-1]
    return key, None


def _hints_for(key: str) -> Any:
    owner, f = _lookup_field(key)
    return _hints(owner)[f.name]


def _coerce(key: str, hint: Any, f: dataclasses.Field, value: Any) -> Any:
    choices = f.metadata.get("choices")
    if choices is not None:
        if value not in choices:
            raise ConfigError(f"{key}={value!r} is not valid; choose one of {', '.join(map(repr, choices))}")
        return value
    try:
        return overrides.coerce(hint, value)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{key}={value!r} is not valid: expected {_describe(hint)} ({err})") from None


def _describe(hint: Any) -> str:
    if overrides.is_optional(hint):
        inner = next(a for a in typing.get_args(hint) if a is not type(None))
        return f"{_describe(inner)} or None"
    return getattr(hint, "__name__", str(hint))


# ---------------------------------------------------------------- validation

def validate(cfg: RunConfig) -> None:
    """Cross-field and value checks; raises ConfigError naming the bad value."""
    for key in PARAMS:
        value = get_value(cfg, key)
        if value is None:
            continue
        table = _param_table(cfg, key)
        for name, given in value.items():
            if name not in table:
                raise ConfigError(f"{key} has no parameter {name!r}; valid: {', '.join(table) or '(none)'}")
            kind, _ = table[name]
            if isinstance(kind, tuple):
                if given not in kind:
                    raise ConfigError(f"{key}.{name}={given!r} is not valid; choose one of "
                                      f"{', '.join(map(repr, kind))}")
            elif not _is_type(given, kind):
                raise ConfigError(f"{key}.{name}={given!r} is not valid: expected {kind.__name__}")
            _check_rule(cfg, key, name, given)
    positive = ["train.epochs", "sampling.n_pde", "model.degree", "train.log_every", "threads"]
    non_negative = ["train.lbfgs_iterations", "sampling.n_bc", "sampling.n_ic"]
    for key in positive + non_negative:
        value = get_value(cfg, key)
        if value is not None and (value <= 0 if key in positive else value < 0):
            raise ConfigError(f"{key}={value} must be {'positive' if key in positive else '>= 0'}")
    for key in ("train.lr", "train.grad_clip"):
        value = get_value(cfg, key)
        if value is not None and not value > 0:
            raise ConfigError(f"{key}={value} must be a positive number")
    if cfg.model.hidden is not None and (not cfg.model.hidden or min(cfg.model.hidden) <= 0):
        raise ConfigError(f"model.hidden={cfg.model.hidden} must be a non-empty list of positive widths")
    if cfg.loss.weights is not None:
        for term, weight in cfg.loss.weights.items():
            if term not in LOSS_TERMS:
                raise ConfigError(f"loss.weights has no term {term!r}; valid: {', '.join(LOSS_TERMS)}")
            if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not weight >= 0:
                raise ConfigError(f"loss.weights.{term}={weight!r} must be a number >= 0")
    if cfg.loss.balancing != "fixed":
        for term, weight in (cfg.loss.weights or {}).items():
            if not weight > 0:
                raise ConfigError(f"loss.weights.{term}={weight} must be > 0 with loss.balancing="
                                  f"{cfg.loss.balancing!r}; use loss.balancing='fixed' to switch a term off")
    if not (cfg.device in ("auto", "cpu", "cuda") or cfg.device.startswith("cuda:")):
        raise ConfigError(f"device={cfg.device!r} is not valid; choose 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if cfg.train.compile and cfg.derivatives != "taylor":
        raise ConfigError(f"train.compile=True needs derivatives='taylor', not {cfg.derivatives!r}: nested autograd "
                          "differentiates twice (double backward), which torch.compile cannot compile; set "
                          "derivatives=taylor, or train.compile=false")


LOSS_TERMS = ("pde", "bc", "ic", "data")


def _check_rule(cfg: RunConfig, key: str, name: str, value: Any) -> None:
    selector = _field_meta(key).get("params_for")
    option = get_value(cfg, selector) if selector else None
    rule = RULES.get((key, option, name)) or RULES.get((key, name))
    if rule is not None and not rule[0](value):
        where = f" for {selector}={option!r}" if selector else ""
        raise ConfigError(f"{key}.{name}={value!r} is not valid{where}: must be {rule[1]}")


def _is_type(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _flatten(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for key, value in data.items():
        if key in SECTIONS and not prefix:
            out += _flatten(value, f"{key}.")
        else:
            out.append((prefix + key, value))
    return out


def diff(a: RunConfig, b: RunConfig) -> dict[str, tuple[Any, Any]]:
    """Keys whose values differ between two configs: key -> (a value, b value)."""
    return {k: (get_value(a, k), get_value(b, k)) for k in all_keys() if get_value(a, k) != get_value(b, k)}


def resolve(cfg: RunConfig, problem: Any) -> RunConfig:
    """Fill every ``from_problem`` field left at None from the problem's sizes for the profile.

    Loss weights merge: the problem's weights, then the config's (the config wins); a term
    with neither gets 1.0. Missing sizes fall back to 0 (L-BFGS iterations, initial points)
    or, for the Chebyshev degree, to `DEFAULT_DEGREE`.
    """
    sizes = dict(problem.sizes.get(cfg.profile, {}))
    if not sizes and problem.sizes:
        raise ConfigError(f"problem {problem.name!r} has no sizes for profile {cfg.profile!r}; "
                          f"it has: {', '.join(problem.sizes)}")
    fallback = {"train.lbfgs_iterations": 0, "sampling.n_ic": 0, "sampling.n_bc": 0, "model.degree": DEFAULT_DEGREE}
    for key in all_keys():
        if not _field_meta(key).get("from_problem") or key == "loss.weights":
            continue
        if get_value(cfg, key) is None:
            value = sizes.get(key, fallback.get(key))
            if value is None:
                raise ConfigError(f"{key} is not set and problem {problem.name!r} gives no value for "
                                  f"profile {cfg.profile!r}; set it, e.g. --set {key}=...")
            cfg = set_value(cfg, key, value)
    weights = {t: 1.0 for t in problem.terms} | dict(problem.weights) | dict(cfg.loss.weights or {})
    return set_value(cfg, "loss.weights", {t: float(weights[t]) for t in problem.terms})
