"""The parameters-cell contract of the study notebooks.

Papermill only warns when it is given a parameter the notebook does not declare, so
`notebook_parameters` turns that into an error; each kind of notebook declares its parameters
as a frozen dataclass that checks their values (`StudyParameters`, `ReportParameters`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from cpikan import problems as registry
from cpikan.config import ConfigError, RunConfig, check_profile
from cpikan.study.reproductions import entry

_IPYTHON_NAMES = frozenset({"In", "Out"})


def notebook_parameters(spec: type, namespace: Mapping[str, Any], **fixed: Any) -> Any:
    """Build the dataclass `spec` from the parameters in a notebook's ``globals()``.

    A parameter is a global whose value is a plain literal (what papermill injects: numbers,
    strings, None, lists and dicts of those); names starting with ``_`` and IPython's In/Out
    are not. `fixed` fields are set by the notebook itself.
    Raises ConfigError naming an unknown parameter and listing the declared ones.
    """
    declared = [f.name for f in dataclasses.fields(spec) if f.name not in fixed]
    unknown = sorted(k for k, v in namespace.items() if not k.startswith("_") and k not in _IPYTHON_NAMES
                     and k not in declared and _is_literal(v))
    if unknown:
        raise ConfigError(f"unknown notebook parameter {', '.join(map(repr, unknown))}; valid: "
                          f"{', '.join(declared)} (restart the kernel if you defined it yourself)")
    missing = [k for k in declared if k not in namespace]
    if missing:
        raise ConfigError(f"notebook parameter {', '.join(map(repr, missing))} is not set: the parameters cell "
                          f"must declare {', '.join(declared)}")
    return spec(**fixed, **{k: namespace[k] for k in declared})


def _is_literal(value: Any) -> bool:
    if value is None or isinstance(value, (str, int, float, bool)):
        return True
    if isinstance(value, (list, tuple)):
        return all(map(_is_literal, value))
    if isinstance(value, dict):
        return all(_is_literal(k) and _is_literal(v) for k, v in value.items())
    return False


def _param(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class StudyParameters:
    """The parameters cell of every ablation and reproduction notebook (`ablation`, the entry's
    name, is fixed by the notebook).

    Each field with a default is one line of the cell, ``name: type = default  # help`` (see
    `parameters_cell`); the defaults are the smoke profile's.
    """

    ablation: str
    profile: str = _param("smoke", "size profile: smoke (seconds, CI), quick (CPU minutes), full (GPU)")
    seeds: int | None = _param(None, "seeds per arm, trained together as one batched run; None: the ablation's "
                                     "for the profile")
    first_seed: int = _param(0, "the seeds are first_seed, first_seed + 1, ... (another study: other seeds)")
    problems: list[str] | None = _param(None, "problem names; None: the ablation's for the profile")
    device: str = _param("auto", "'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N'")
    results_dir: str = _param("../../reports", "results root: runs go to <results_dir>/<profile>/runs/{ablation}/")
    threads: int | None = _param(1, "torch CPU threads per run (1: the same numbers on any machine); "
                                    "None: torch's setting")
    resume: bool = _param(False, "reuse ok run files of the same config instead of training again "
                                 "(the batch runner sets True)")

    def __post_init__(self) -> None:
        entry(self.ablation)
        check_profile(self.profile, "notebook parameter profile")
        for key in ("seeds", "threads"):
            value = getattr(self, key)
            if value is not None and (type(value) is not int or value < 1):
                raise ConfigError(f"notebook parameter {key}={value!r} is not valid: a positive int or None")
        if type(self.first_seed) is not int or self.first_seed < 0:
            raise ConfigError(f"notebook parameter first_seed={self.first_seed!r} is not valid: an int >= 0")
        if self.problems is not None:
            if not isinstance(self.problems, (list, tuple)) or not self.problems:
                raise ConfigError(f"notebook parameter problems={self.problems!r} is not valid: a non-empty "
                                  f"list of problem names or None; valid names: {', '.join(registry.names())}")
            for problem in self.problems:
                registry.check(problem)
        if not isinstance(self.device, str):
            raise ConfigError(f"notebook parameter device={self.device!r} is not valid: "
                              "'auto', 'cpu', 'cuda' or 'cuda:N'")
        RunConfig(device=self.device)
        if not isinstance(self.results_dir, str) or not self.results_dir:
            raise ConfigError(f"notebook parameter results_dir={self.results_dir!r} must be a folder path")
        if not isinstance(self.resume, bool):
            raise ConfigError(f"notebook parameter resume={self.resume!r} is not valid: True or False")

    @property
    def problem_list(self) -> list[str]:
        return list(self.problems or entry(self.ablation).problems[self.profile])

    @property
    def seed_count(self) -> int:
        return self.seeds or entry(self.ablation).seeds[self.profile]


def parameters_cell(spec: type, **context: str) -> str:
    """Source of the parameters cell declaring `spec`'s fields that have a default.

    One line per field, ``name: type = default  # help``, in the form papermill reads (its
    parser knows ``Optional[int]``, not ``int | None``); `context` fills ``{name}`` in the help.
    """
    lines = []
    for f in dataclasses.fields(spec):
        if f.default is dataclasses.MISSING:
            continue
        annotation = str(f.type)  # a string: this module's annotations are postponed
        if annotation.endswith(" | None"):
            annotation = f"Optional[{annotation.removesuffix(' | None')}]"
        default = json.dumps(f.default) if isinstance(f.default, str) else repr(f.default)
        lines.append(f"{f.name}: {annotation} = {default}  # {f.metadata['help'].format(**context)}")
    imports = "from typing import Optional\n\n" if any(": Optional[" in line for line in lines) else ""
    return imports + "\n".join(lines)


def parameters(ablation: str, namespace: Mapping[str, Any]) -> StudyParameters:
    """The checked parameters of ablation notebook `ablation`, read from its ``globals()``.

    Raises ConfigError for an unknown parameter (one papermill injected under a name the
    parameters cell does not declare: papermill itself only warns) or a bad value.
    """
    return notebook_parameters(StudyParameters, namespace, ablation=ablation)


@dataclass(frozen=True)
class ReportParameters:
    """Parameters cell of the report notebook: the profile and the results root."""

    profile: str = "smoke"
    results_dir: str = "../reports"

    def __post_init__(self) -> None:
        check_profile(self.profile, "notebook parameter profile")
        if not isinstance(self.results_dir, str) or not self.results_dir:
            raise ConfigError(f"notebook parameter results_dir={self.results_dir!r} must be a folder path")


def report_parameters(namespace: Mapping[str, Any]) -> ReportParameters:
    """The report notebook's checked parameters, read from its ``globals()``."""
    return notebook_parameters(ReportParameters, namespace)
