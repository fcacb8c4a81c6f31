"""The report: tables, recommended settings, summary, figures and files, from a fixture store."""

import math
import shlex

import pandas as pd
import pytest

from cpikan import cli, study
from cpikan.config import RunConfig, resolve
from cpikan.overrides import format_value, set_arguments
from cpikan.runs import RunResult, build_problem, run_path
from cpikan.study import budget, export, figures, report, verdicts
from cpikan.study.report import readable


def _save(root, ablation, problem, variant, seed, rel_l2=None, ms=10.0, history=None, adam=None, lbfgs=None):
    """A run file as `run_variants` writes it; rel_l2 None writes a failed run. `adam` (rel_l2 at
    the end of Adam) and `lbfgs` (L-BFGS iterations run) are recorded when given."""
    cfg = study.variant_config(study.get(ablation), study.get(ablation).variant(variant), problem, seed=seed)
    if rel_l2 is None:
        result = RunResult.failed(cfg, RuntimeError("boom"))
    else:
        metrics = {"rel_l2": rel_l2, "max_abs_err": 2 * rel_l2, "final_loss": 1e-3, "epochs_run": 3,
                   "stop_reason": "max_epochs", "wall_time_s": 3 * ms / 1000, "time_per_epoch_ms": ms,
                   "peak_mem_mb": 100.0, "device": "cpu (x86_64, 1 threads)", "versions": {"torch": "2.13.0"}}
        metrics |= {k: v for k, v in (("rel_l2_adam", adam), ("lbfgs_iterations", lbfgs)) if v is not None}
        history = history or {"epoch": [0, 1, 2], "loss": [1.0, 0.5, 0.1 * (seed + 1)], "lr": [1e-3] * 3,
                              "grad_norm": [5.0, 2.0, 1.0], "points_per_s": [1e4, 1e4, 1e4 / ms]}
        result = RunResult(config=resolve(cfg, build_problem(cfg)).to_dict(), metrics=metrics, history=history)
    return result.save(run_path(root, "smoke", ablation, problem, variant, seed))


BASELINE_L2 = (0.2, 0.4, 0.6)


@pytest.fixture
def store(tmp_path):
    """Three seeds on poisson1d: clipping at 10 quarters the error on every seed, clipping at 1 fails
    once; bf16 keeps the error and halves the time, fp16 is 4x faster but 3x less accurate.
    One seed on helmholtz2d (init, scheduler): no verdict can come of it."""
    for seed, l2 in enumerate(BASELINE_L2):
        for ablation in ("grad_clip", "amp"):  # the same baseline runs, under both ablations
            _save(tmp_path, ablation, "poisson1d", "baseline", seed, l2)
        _save(tmp_path, "grad_clip", "poisson1d", "max_norm_10", seed, l2 / 4 * (1 + 0.01 * seed))
        _save(tmp_path, "grad_clip", "poisson1d", "max_norm_1", seed, None if seed == 0 else 0.5)
        _save(tmp_path, "amp", "poisson1d", "bf16", seed, l2 * (1.1, 0.9, 1.0)[seed], ms=5.0 + 0.1 * seed)
        _save(tmp_path, "amp", "poisson1d", "fp16", seed, 3 * l2, ms=2.5)
    _save(tmp_path, "init", "helmholtz2d", "baseline", 0, 0.5)
    _save(tmp_path, "init", "helmholtz2d", "kaiming", 0, 0.48)
    _save(tmp_path, "scheduler", "helmholtz2d", "baseline", 0, 0.5)
    _save(tmp_path, "scheduler", "helmholtz2d", "cosine", 0, 0.4999)
    return tmp_path


def _frame(store, ablation=None):
    return report.frame(study.load_runs(store, "smoke", ablation))


def test_headline_has_the_baseline_first_counts_shared_runs_once_and_shows_toggles(store):
    table = report.headline(_frame(store), "poisson1d")
    assert list(table.variant) == ["baseline", "grad_clip/max_norm_10", "grad_clip/max_norm_1", "amp/bf16", "amp/fp16"]
    assert list(table["train.grad_clip"]) == ["none", "10.0", "1.0", "none", "none"]
    assert list(table["train.amp"]) == ["none", "none", "none", "bf16", "fp16"]
    assert "model.init" not in table
    base = table.iloc[0]
    assert (base.seeds, base.failed) == (3, 0)
    assert base.rel_l2_mean == pytest.approx(0.4) and base.rel_l2_std == pytest.approx(0.2)
    clipped = table.iloc[2]
    assert (clipped.seeds, clipped.failed, clipped.rel_l2_mean, clipped.rel_l2_std) == (2, 1, 0.5, 0.0)
    assert "RuntimeError: boom" in clipped.error
    assert base.run_files.count(";") == 2 and "grad_clip/poisson1d/baseline" in base.run_files


def test_verdicts_pair_seeds_within_each_ablation_and_name_their_run_files(store):
    table = verdicts.verdicts(_frame(store)).set_index(["ablation", "variant"])
    clip = table.loc["grad_clip", "max_norm_10"]
    assert clip.group == "1 stability" and clip.seeds == 3
    assert (clip.rel_l2_verdict, clip.time_per_epoch_ms_verdict, clip.wall_time_s_verdict) == (
        verdicts.BETTER, verdicts.SAME, verdicts.SAME)
    assert clip.rel_l2_ratio == pytest.approx(0.25 * (1.01 * 1.02) ** (1 / 3))
    assert len(clip.run_files.split(";")) == 6 and "grad_clip/poisson1d/baseline/seed2.json" in clip.run_files
    assert table.loc["grad_clip", "max_norm_1"].rel_l2_verdict == verdicts.FAILED
    bf16, fp16 = table.loc["amp", "bf16"], table.loc["amp", "fp16"]
    assert (bf16.rel_l2_verdict, bf16.time_per_epoch_ms_verdict) == (verdicts.SAME, verdicts.BETTER)
    assert (fp16.rel_l2_verdict, fp16.time_per_epoch_ms_verdict) == (verdicts.WORSE, verdicts.BETTER)
    assert table.loc["init", "kaiming"].rel_l2_verdict == verdicts.SAME  # one seed: no interval
    assert list(table.group) == ["1 stability"] * 4 + ["3 convergence and cost"] * 2


def test_only_better_variants_are_recommended_on_each_ablation_goal(store):
    table = verdicts.recommended(verdicts.verdicts(_frame(store)), "smoke")
    rows = {(r.problem, r.ablation): r for r in table.itertuples()}
    assert len(rows) == len(table)  # runs without rel_l2_adam: one phase per ablation, the end of the run
    clip = rows["poisson1d", "grad_clip"]
    assert (clip.recommended, clip.variant, clip.goal, clip.phase) == ("--set train.grad_clip=10.0", "max_norm_10",
                                                                      "rel_l2", "end of run")
    assert clip.goal_ratio == pytest.approx(0.25, rel=0.02) and clip.goal_high < 1
    amp = rows["poisson1d", "amp"]  # fp16 is faster still, but less accurate: bf16
    assert (amp.recommended, amp.goal, amp.phase) == ("--set train.amp=bf16", "time_per_epoch_ms", "end of run")
    assert amp.goal_ratio == pytest.approx(0.51, rel=0.02) and amp.rel_l2_low < 1 < amp.rel_l2_high
    for key in [("helmholtz2d", "init"), ("helmholtz2d", "scheduler")]:  # one seed each
        assert (rows[key].recommended, rows[key].variant) == (verdicts.NOTHING, "baseline")
    assert "nothing better than the baseline at this budget" == verdicts.NOTHING


def test_a_recommendation_names_the_phase_it_holds_for(tmp_path):
    """grad_clip (with L-BFGS): clipping at 10 halves the error after Adam, and L-BFGS evens it
    out; clipping at 1 is no better after Adam, and ends three times lower. amp: fp16 is faster
    still than bf16, but twice worse after Adam. init (no L-BFGS): kaiming halves the error, judged
    once, at the end of the run."""
    for seed, l2 in enumerate(BASELINE_L2):
        w, jitter = 1 + 0.01 * seed, (1.1, 0.9, 1.0)[seed]
        _save(tmp_path, "grad_clip", "poisson1d", "baseline", seed, l2, adam=10 * l2, lbfgs=100)
        _save(tmp_path, "grad_clip", "poisson1d", "max_norm_10", seed, l2 * w, adam=5 * l2 * w, lbfgs=100)
        _save(tmp_path, "grad_clip", "poisson1d", "max_norm_1", seed, l2 / 3 * w, adam=10 * l2 * jitter, lbfgs=100)
        _save(tmp_path, "amp", "poisson1d", "baseline", seed, l2, adam=10 * l2, lbfgs=100)
        _save(tmp_path, "amp", "poisson1d", "bf16", seed, l2 * jitter, 5.0 + 0.1 * seed, adam=10 * l2 * w, lbfgs=100)
        _save(tmp_path, "amp", "poisson1d", "fp16", seed, l2 * jitter, 2.5, adam=20 * l2 * w, lbfgs=100)
        _save(tmp_path, "init", "poisson1d", "baseline", seed, l2, adam=l2, lbfgs=0)
        _save(tmp_path, "init", "poisson1d", "kaiming", seed, l2 / 2 * w, adam=l2 / 2 * w, lbfgs=0)
    rep = report.gather(tmp_path, "smoke")
    judged = rep.verdicts.set_index("variant")
    assert (judged.loc["max_norm_10", "rel_l2_adam_verdict"], judged.loc["max_norm_10", "rel_l2_verdict"]) == (
        verdicts.BETTER, verdicts.SAME)
    assert judged.loc["kaiming", "rel_l2_adam_verdict"] == verdicts.ONE_PHASE
    rows = {(r.ablation, r.phase): r for r in rep.recommended.itertuples()}
    assert sorted(rows) == [("amp", "end of run"), ("grad_clip", "after Adam"), ("grad_clip", "end of run"),
                            ("init", "end of run")]
    assert rows["grad_clip", "after Adam"].variant == "max_norm_10"
    assert rows["grad_clip", "after Adam"].goal_ratio == pytest.approx(0.5, rel=0.02)
    assert rows["grad_clip", "end of run"].variant == "max_norm_1"
    assert rows["grad_clip", "end of run"].goal_ratio == pytest.approx(1 / 3, rel=0.02)
    amp = rows["amp", "end of run"]
    assert (amp.variant, amp.goal) == ("bf16", "time_per_epoch_ms")
    assert amp.rel_l2_adam_low < 1 < amp.rel_l2_adam_high and amp.rel_l2_low < 1 < amp.rel_l2_high
    assert rows["init", "end of run"].variant == "kaiming"
    shown = readable(rep.recommended)
    assert list(shown.columns) == ["problem", "ablation", "goal", "phase", "recommended", "variant",
                                   "goal ratio [adjusted CI]", "rel_l2 after Adam ratio [adjusted CI]",
                                   "rel_l2 end of run ratio [adjusted CI]", "seeds"]
    cells = readable(rep.verdicts).set_index("variant")["rel_l2 after Adam ratio [adjusted CI]"]
    assert cells["kaiming"] == verdicts.ONE_PHASE and cells["max_norm_10"].endswith("] better")


def test_timing_table_holds_the_means_without_a_ratio(store):
    table = report.timing(_frame(store))
    bf16 = table[(table.problem == "poisson1d") & (table.variant == "amp/bf16")].iloc[0]
    assert bf16.time_per_epoch_ms == pytest.approx(5.1)
    assert bf16.points_per_s == pytest.approx(sum(1e4 / ms for ms in (5.0, 5.1, 5.2)) / 3)
    assert "speedup" not in table  # ratios to the baseline come with an interval, in the verdicts


def test_summary_is_rounded_and_names_failures(store):
    runs = study.load_runs(store, "smoke", "grad_clip")
    assert report.summary(runs) == ("poisson1d: best max_norm_10 rel_l2 1e-01, baseline 4e-01 (4x); "
                                    "failed: max_norm_1 (RuntimeError)")
    assert report.summary(study.load_runs(store, "smoke", "scheduler")) == "helmholtz2d: best baseline rel_l2 5e-01"
    assert report.summary([]) == "no runs"


def test_the_report_builds_tables_and_html_traced_to_run_files(store):
    rep = export.build(study.ReportParameters(results_dir=str(store)))
    tables = store / "smoke" / "tables"
    names = sorted(p.name for p in tables.iterdir())
    assert names == ["helmholtz2d.csv", "helmholtz2d.md", "poisson1d.csv", "poisson1d.md", "recommended.csv",
                     "recommended.md", "runs.csv", "setup.md", "time_to_reach.csv", "time_to_reach.md", "timing.csv",
                     "timing.md", "verdicts.csv", "verdicts.md"]
    runs_csv = pd.read_csv(tables / "runs.csv")
    assert len(runs_csv) == len(rep.runs) == 22
    traced = ";".join(pd.concat([pd.read_csv(tables / f"{p}.csv") for p in rep.problems]).run_files).split(";")
    duplicates = {str(r.path) for r in rep.runs if r.ablation in ("amp", "init") and r.variant == "baseline"}
    assert set(traced) == {str(r.path) for r in rep.runs} - duplicates
    assert "| baseline " in (tables / "poisson1d.md").read_text()
    judged = report.readable(rep.verdicts).set_index("variant")
    assert list(judged.columns) == ["stage", "ablation", "problem", "seeds", "rel_l2 after Adam ratio [adjusted CI]",
                                    "rel_l2 end of run ratio [adjusted CI]", "time/epoch ratio [adjusted CI]",
                                    "wall time ratio [adjusted CI]", "peak memory ratio [adjusted CI]"]
    assert judged.loc["max_norm_10", "rel_l2 end of run ratio [adjusted CI]"].endswith("] better")
    assert judged.loc["max_norm_10", "rel_l2 after Adam ratio [adjusted CI]"] == "–"  # not in these run files
    assert judged.loc["max_norm_1", "time/epoch ratio [adjusted CI]"] == "failed"
    setup = (tables / "setup.md").read_text()
    assert verdicts.METHOD in setup and "| rel_l2 end of run | 5 " in setup  # 5 rows judged: max_norm_1 failed
    assert "| max_norm_10 " in (tables / "verdicts.md").read_text()
    assert len(pd.read_csv(tables / "verdicts.csv")) == 6
    html = (store / "smoke" / "report.html").read_text()
    order = [html.index(f"<h2>{h}</h2>") for h in ("Setup", "Verdicts", "Recommended settings", "poisson1d",
                                                   "Timing and memory", "Failed runs")]
    assert order == sorted(order) and html.index("<h2>") == order[0]
    assert "Accuracy: paired-seed ratio of rel_l2" in html and "poisson1d: training loss" in html
    assert "--set train.grad_clip=10.0" in html and "❌" not in html and "✔" not in html


def test_readable_tables_say_never_and_put_each_interval_with_its_verdict_in_one_cell():
    reach = pd.DataFrame({"variant": ["a", "b"], "baseline_time_s": [2.0, 2.0], "time_s": [1.0, math.inf],
                          "speedup": [2.0, math.nan], "run_files": ["x", "y"]})
    assert readable(reach).values.tolist() == [["a", "2", "1", "2"], ["b", "2", "never", "–"]]
    judged = pd.DataFrame({"group": ["g"], "rel_l2_ratio": [0.5], "rel_l2_low": [0.25], "rel_l2_high": [0.9],
                           "rel_l2_verdict": [verdicts.BETTER], "wall_time_s_ratio": [math.nan],
                           "wall_time_s_low": [math.nan], "wall_time_s_high": [math.nan],
                           "wall_time_s_verdict": [verdicts.FAILED]})
    assert readable(judged).to_dict("records") == [{"stage": "g",
                                                    "rel_l2 end of run ratio [95 % CI]": "0.5 [0.25, 0.9] better",
                                                    "wall time ratio [95 % CI]": "failed"}]
    adjusted = judged.assign(rel_l2_level=[0.99], rel_l2_p=[0.001], rel_l2_raw_low=[0.3], rel_l2_raw_high=[0.8])
    assert list(readable(adjusted).columns) == ["stage", "rel_l2 end of run ratio [adjusted CI]",
                                                "wall time ratio [95 % CI]"]


def test_the_setup_section_states_budget_seeds_machine_and_versions(store):
    rep = report.gather(store, "smoke")
    setup = rep.budget.markdown()
    assert "- profile: smoke" in setup and "- seeds per ablation: grad_clip 3, amp 3, scheduler 1, init 1" in setup
    assert "- torch (run files): 2.13.0" in setup and "- devices (run files): cpu (x86_64, 1 threads)" in setup
    assert budget.processor() in setup and "cores)" in budget.processor()
    assert budget.CAVEAT in setup and "verdicts hold for this budget" in budget.CAVEAT
    sizes = rep.budget.problems.set_index("problem")
    smoke = resolve(RunConfig(problem="poisson1d", profile="smoke"), build_problem(RunConfig(problem="poisson1d")))
    assert sizes.loc["poisson1d", "epochs"] == str(smoke.train.epochs)
    assert sizes.loc["poisson1d", "n_pde"] == str(smoke.sampling.n_pde)


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
    ("train.grad_clip", None, "none"), ("train.grad_clip", 0.5, "0.5"), ("train.amp", "none", "none"),
    ("train.compile", True, "true"), ("train.compile", False, "false"),
    ("model.arch", "scaled_cpikan", "scaled_cpikan"),
    ("sampling.batches", {"count": 4, "mode": "patches"}, '{"count": 4, "mode": "patches"}'),
    ("loss.balancing", "fixed", "fixed"),
])
def test_toggle_cells_are_plain_text(key, value, text):
    assert format_value(value) == text  # the cell report.frame writes for `key`


def _variants():
    return [(a, v) for a in study.ABLATIONS.values() for v in a.variants]


@pytest.mark.parametrize("ablation, variant", _variants(), ids=[f"{a.name}/{v.name}" for a, v in _variants()])
def test_every_printed_setting_reads_back_as_the_variant(ablation, variant):
    """Toggle cells (``key=<cell>``) and recommended settings (``--set ...`` through the CLI parser)
    give back the variant's config, for every variant the registry holds."""
    problem = ablation.problems["smoke"][0]
    expected = study.variant_config(ablation, variant, problem, "smoke")
    plain = RunConfig(problem=problem, profile="smoke")
    cells = [f"{key}={format_value(value)}" for key, value in variant.overrides.items()]
    assert plain.override(dict(ablation.base.get("smoke", {})), *cells) == expected
    text = set_arguments({**ablation.base.get("smoke", {}), **variant.overrides})
    args = cli.parser().parse_args(["run", "--problem", problem, "--profile", "smoke", *shlex.split(text)])
    assert RunConfig(problem=args.problem, profile=args.profile).override(*args.set) == expected


def test_each_recommendation_of_a_report_is_accepted_by_the_cli(store):
    rep = report.gather(store, "smoke")
    printed = [r for r in rep.recommended.itertuples() if r.recommended != verdicts.NOTHING]
    assert len(printed) == 2
    for r in printed:
        args = cli.parser().parse_args(["run", "--problem", r.problem, "--profile", "smoke",
                                        *shlex.split(r.recommended)])
        ablation = study.get(r.ablation)
        assert RunConfig(problem=r.problem, profile="smoke").override(*args.set) == study.variant_config(
            ablation, ablation.variant(r.variant), r.problem, "smoke")


def test_figures_draw_every_variant(store):
    runs = study.load_runs(store, "smoke", "grad_clip")
    loss = figures.curves(runs, "loss")
    assert [t.name for t in loss.data if t.showlegend] == ["baseline", "max_norm_10", "max_norm_1"]
    assert len(loss.data) == 3 + 3  # median traces, and a band for each variant with more than one ok seed
    assert len(figures.curves(runs, ["loss", "lr"], log_y=False).data) == 12
    bars = figures.bars(runs, ["rel_l2", "points_per_s"])
    assert list(bars.data[0].x) == ["baseline", "max_norm_10", "max_norm_1"]
    assert len(figures.cost_vs_points(runs).data) == 3
    assert len(figures.point_clouds(runs).layout.annotations) == 3 + 3  # titles and "no points" notes
    scales = figures.coefficient_scales(study.load_runs(store, "smoke", "init"))
    assert [t.name for t in scales.data] == ["baseline (init)", "kaiming (init)"]
