"""The study wing (extra ``cpikan[study]``): ablation and reproduction registries, runner, papermill
batch, results store, notebook parameters, report tables, published-vs-ours tables, figures and
HTML export. The core never imports it.

What the notebooks and the CLI call is re-exported here.
"""

from cpikan.study.compare import compare_studies, format_comparison
from cpikan.study.notebooks import render_notebooks
from cpikan.study.parameters import ReportParameters, StudyParameters, parameters, report_parameters
from cpikan.study.registry import (ABLATIONS, BASELINE, CHOSEN, TOGGLES, Ablation, Variant, get, names, plan,
                                   variant_config)
from cpikan.study.reproductions import REPRODUCTIONS, Published, Reproduction
from cpikan.study.runner import build_report, run_reproductions, run_study, run_variants
from cpikan.study.store import StudyRun, load_runs

__all__ = ["ABLATIONS", "BASELINE", "CHOSEN", "REPRODUCTIONS", "TOGGLES", "Ablation", "Published", "ReportParameters",
           "Reproduction", "StudyParameters", "StudyRun", "Variant", "build_report", "compare_studies",
           "format_comparison", "get", "load_runs", "names", "parameters", "plan", "render_notebooks",
           "report_parameters", "run_reproductions", "run_study", "run_variants", "variant_config"]
