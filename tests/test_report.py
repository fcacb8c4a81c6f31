"""The report: tables, recommended settings, summary, figures and files, from a fixture store."""

import math

import pandas as pd
import pytest

from cpikan import study
from cpikan.study import export, figures, report
from cpikan.config import resolve
from cpikan.runs import RunResult, build_problem, run_path


def _save(root, ablation, problem, variant, seed, rel_l2=None, ms=10.0):
    """A run file as `run_variants` writes it; rel_l2 None writes a failed run."""
    cfg = study.variant_config(study.get(ablation), study.get(ablation).variant(variant), problem, seed=seed)
    if rel_l2 is None:
        result = RunResult.failed(cfg, RuntimeError("boom"))
    else:
        metrics = {"rel_l2": rel_l2, "max_abs_err": 2 * rel_l2, "final_loss": 1e-3, "epochs_run": 3,
                   "stop_reason": "max_epochs", "wall_time_s": 3 * ms / 1000, "time_per_epoch_ms": ms,
                   "peak_mem_mb": 100.0, "device": "cpu"}
        history = {"epoch": [0, 1, 2], "loss": [1.0, 0.5, 0.1 * (seed + 1)], "lr": [1e-3] * 3,
                   "grad_norm": [5.0, 2.0, 1.0], "points_per_s": [1e4, 1e4, 1e4 / ms]}
        result = RunResult(config=resolve(cfg, build_problem(cfg)).to_dict(), metrics=metrics, history=history)
    return result.save(run_path(root, "smoke", ablation, problem, variant, seed))


@pytest.fixture
def store(tmp_path):
    for ablation in ("grad_clip", "amp"):  # the same baseline runs, under both ablations
        _save(tmp_path, ablation, "poisson1d", "baseline", 0, 0.2)
        _save(tmp_path, ablation, "poisson1d", "baseline", 1, 0.4)
    _save(tmp_path, "grad_clip", "poisson1d", "max_norm_10", 0, 0.1)
    _save(tmp_path, "grad_clip", "poisson1d", "max_norm_10", 1, 0.1)
    _save(tmp_path, "grad_clip", "poisson1d", "max_norm_1", 0, None)
    _save(tmp_path, "grad_clip", "poisson1d", "max_norm_1", 1, 0.5)
    _save(tmp_path, "amp", "poisson1d", "bf16", 0, 0.31, ms=5.0)
    _save(tmp_path, "amp", "poisson1d", "bf16", 1, 0.31, ms=5.0)
    _save(tmp_path, "init", "helmholtz2d", "baseline", 0, 0.5)
    _save(tmp_path, "init", "helmholtz2d", "kaiming", 0, 0.48)
    _save(tmp_path, "scheduler", "helmholtz2d", "baseline", 0, 0.5)
    _save(tmp_path, "scheduler", "helmholtz2d", "cosine", 0, 0.4999)
    return tmp_path


def test_headline_has_the_baseline_first_counts_shared_runs_once_and_shows_toggles(store):
    df = report.frame(study.load_runs(store, "smoke"))
    table = report.headline(df, "poisson1d")
    assert list(table.variant) == ["baseline", "grad_clip/max_norm_10", "grad_clip/max_norm_1", "amp/bf16"]
    assert list(table["train.grad_clip"]) == ["❌", "10", "1", "❌"]
    assert list(table["train.amp"]) == ["❌", "❌", "❌", "bf16"]
    assert "model.init" not in table
    base = table.iloc[0]
    assert (base.seeds, base.failed) == (2, 0)
    assert base.rel_l2_mean == pytest.approx(0.3) and base.rel_l2_std == pytest.approx(math.sqrt(0.02))
    clipped = table.iloc[2]
    assert (clipped.seeds, clipped.failed, clipped.rel_l2_mean) == (1, 1, 0.5)
    assert "RuntimeError: boom" in clipped.error and math.isnan(clipped.rel_l2_std)
    assert base.run_files.count(";") == 1 and "grad_clip/poisson1d/baseline" in base.run_files


def test_recommended_settings_follow_each_ablation_goal(store):
    table = report.recommended(report.frame(study.load_runs(store, "smoke")))
    rows = {(r.problem, r.ablation): r for r in table.itertuples()}
    assert rows["poisson1d", "grad_clip"].recommended == "--set train.grad_clip=10.0"
    assert rows["poisson1d", "grad_clip"].gain == pytest.approx(3.0)
    assert rows["poisson1d", "amp"].recommended == "--set train.amp=bf16"  # 2x faster, error within 1.5x
    assert rows["poisson1d", "amp"].gain == pytest.approx(2.0)
    assert rows["helmholtz2d", "init"].recommended == "keep the default"  # 4 % better is not enough


def test_timing_table_gives_the_speedup_over_the_baseline(store):
    table = report.timing(report.frame(study.load_runs(store, "smoke")))
    bf16 = table[(table.problem == "poisson1d") & (table.variant == "amp/bf16")].iloc[0]
    assert bf16.speedup == pytest.approx(2.0) and bf16.points_per_s == pytest.approx(2000.0)


def test_summary_is_rounded_and_names_failures(store):
    runs = study.load_runs(store, "smoke", "grad_clip")
    assert report.summary(runs) == ("poisson1d: best max_norm_10 rel_l2 1e-01, baseline 3e-01 (3x); "
                                    "failed: max_norm_1 (RuntimeError)")
    assert report.summary(study.load_runs(store, "smoke", "scheduler")) == "helmholtz2d: best baseline rel_l2 5e-01"
    assert report.summary([]) == "no runs"


def test_the_report_builds_tables_and_html_traced_to_run_files(store):
    rep = export.build(study.ReportParameters(results_dir=str(store)))
    tables = store / "smoke" / "tables"
    names = sorted(p.name for p in tables.iterdir())
    assert names == ["helmholtz2d.csv", "helmholtz2d.md", "poisson1d.csv", "poisson1d.md", "recommended.csv",
                     "recommended.md", "runs.csv", "timing.csv", "timing.md"]
    runs_csv = pd.read_csv(tables / "runs.csv")
    assert len(runs_csv) == len(rep.runs) == 14
    traced = ";".join(pd.concat([pd.read_csv(tables / f"{p}.csv") for p in rep.problems]).run_files).split(";")
    duplicates = {str(r.path) for r in rep.runs if r.ablation in ("amp", "init") and r.variant == "baseline"}
    assert set(traced) == {str(r.path) for r in rep.runs} - duplicates
    assert "| baseline " in (tables / "poisson1d.md").read_text()
    html = (store / "smoke" / "report.html").read_text()
    assert "Recommended settings" in html and "poisson1d: training loss" in html and "Failed runs" in html


def test_the_report_of_an_empty_store_says_so(tmp_path):
    rep = export.build(study.ReportParameters(results_dir=str(tmp_path)))
    assert rep.runs == [] and rep.problems == []
    assert "0 runs (0 failed)" in (tmp_path / "smoke" / "report.html").read_text()
    export.show(rep)


@pytest.mark.slow
def test_the_report_notebook_runs_through_papermill(store):
    path = study.build_report("smoke", root=store)
    assert path == store / "smoke" / "report.html" and path.is_file()
    assert (store / "smoke" / "notebooks" / "report.ipynb").is_file()


@pytest.mark.parametrize("key, value, text", [
    ("train.grad_clip", None, "❌"), ("train.grad_clip", 0.5, "0.5"), ("train.amp", "none", "❌"),
    ("train.compile", True, "✔"), ("train.compile", False, "❌"), ("model.arch", "scaled_cpikan", "scaled_cpikan"),
    ("sampling.batches", {"count": 4}, "count=4"), ("loss.balancing", "fixed", "❌"),
])
def test_toggle_cells(key, value, text):
    assert report.toggle_text(key, value) == text


def test_figures_draw_every_variant(store):
    runs = study.load_runs(store, "smoke", "grad_clip")
    loss = figures.curves(runs, "loss")
    assert [t.name for t in loss.data if t.showlegend] == ["baseline", "max_norm_10", "max_norm_1"]
    assert len(loss.data) == 2 + 2 + 1  # median traces, and a band for each variant with two ok seeds
    assert len(figures.curves(runs, ["loss", "lr"], log_y=False).data) == 10
    bars = figures.bars(runs, ["rel_l2", "points_per_s"])
    assert list(bars.data[0].x) == ["baseline", "max_norm_10", "max_norm_1"]
    assert len(figures.cost_vs_points(runs).data) == 3
    assert len(figures.point_clouds(runs).layout.annotations) == 3 + 3  # titles and "no points" notes
    scales = figures.coefficient_scales(study.load_runs(store, "smoke", "init"))
    assert [t.name for t in scales.data] == ["baseline (init)", "kaiming (init)"]
