"""Published against ours: the match rule, the table and its files, on synthetic run files with a known answer."""

import math

import pandas as pd
import pytest

from cpikan import study
from cpikan.config import ConfigError, resolve
from cpikan.runs import RunResult, build_problem, run_path
from cpikan.study import export, published, report, reproductions
from cpikan.study.published import MATCH, NO_MATCH, NO_VALUE, compare, verdict
from cpikan.study.reproductions import NOT_RETRIEVED, UNCONFIRMED, Published
from cpikan.study.verdicts import BETTER, FAILED, SAME

WANG = reproductions.get("wang2021_helmholtz")


@pytest.mark.parametrize("value, spread, ours, expected", [
    (0.10, 0.02, [0.11, 0.15], MATCH),  # [0.08, 0.12] overlaps [0.11, 0.15]
    (0.10, 0.02, [0.13, 0.15], NO_MATCH),  # [0.08, 0.12] below [0.13, 0.15]
    (0.10, 0.02, [0.05, 0.079], NO_MATCH),  # ... and above [0.05, 0.079]
    (0.10, 0.0, [0.10, 0.3], MATCH),  # a zero spread: the value itself must be among ours
    (0.10, None, [0.05, 0.3], MATCH),  # no spread: inside [min, max]
    (0.10, None, [0.12, 0.3], MATCH),  # outside, geometric mean 0.19: within 2x
    (0.10, None, [0.2, 0.2], MATCH),  # exactly 2x: still a match
    (0.10, None, [0.25, 0.3], NO_MATCH),  # geometric mean 0.274: 2.7x
    (0.10, None, [0.04, 0.045], NO_MATCH),  # 2.4x below
])
def test_the_match_rule(value, spread, ours, expected):
    assert verdict(Published("m", value, spread), ours) == expected


def test_no_published_value_and_failed_runs_have_their_own_words():
    assert verdict(Published("m", None, source=NOT_RETRIEVED), [0.1, 0.2]) == NO_VALUE
    assert verdict(Published("m", 0.1), []) == FAILED
    assert verdict(Published("m", 0.1), [0.1, math.nan]) == FAILED


def test_a_published_number_states_where_it_comes_from():
    with pytest.raises(ConfigError, match="give a value, or none with source 'not retrieved'"):
        Published("m", None)
    with pytest.raises(ConfigError, match="give a value, or none"):
        Published("m", 0.1, source=NOT_RETRIEVED)
    with pytest.raises(ConfigError, match="value must be > 0"):
        Published("m", -0.1)


def test_a_reproduction_needs_a_published_number_per_arm_and_its_reference():
    fields = dict(keys=WANG.keys, variants=WANG.variants, problems=WANG.problems, seeds=WANG.seeds, title="t",
                  intro="i", figure="f", story="s", why="w", stage="reproduction", paper="p", result="r", code="c",
                  differences=("d",))
    with pytest.raises(ConfigError, match=r"published numbers for \['baseline'\], but the arms are "
                                          r"\['baseline', 'fixed_boundary', 'lra', 'raw_inputs'\]"):
        study.Reproduction("x", **fields, published={"baseline": Published("m", 0.1)})
    with pytest.raises(ConfigError, match="reproduction 'x' needs code"):
        study.Reproduction("x", **{**fields, "code": ""}, published=dict(WANG.published))


def _save(root, entry, arm, seed, rel_l2=None, wall=60.0, members=1):
    """A run file as `run_variants` writes it (smoke config); rel_l2 None writes a failed run;
    `members`: how many seeds trained together (their wall time is one)."""
    cfg = study.variant_config(entry, entry.variant(arm), entry.problems["smoke"][0], seed=seed)
    if rel_l2 is None:
        result = RunResult.failed(cfg, RuntimeError("boom"))
    else:
        metrics = {"rel_l2": rel_l2, "max_abs_err": rel_l2, "final_loss": 1e-3, "epochs_run": 20,
                   "stop_reason": "max_epochs", "wall_time_s": wall, "time_per_epoch_ms": wall / 20,
                   "peak_mem_mb": 100.0, "device": "cpu", "members": members}
        result = RunResult(config=resolve(cfg, build_problem(cfg)).to_dict(), metrics=metrics,
                           history={"epoch": [0, 19], "loss": [1.0, 0.1]})
    return result.save(run_path(root, "smoke", entry.name, entry.problems["smoke"][0], arm, seed))


@pytest.fixture
def store(tmp_path):
    for seed, (plain, lra) in enumerate([(0.2, 0.010), (0.1, 0.012), (0.4, 0.011)]):
        _save(tmp_path, WANG, "baseline", seed, plain, wall=100.0 + seed)
        _save(tmp_path, WANG, "lra", seed, lra, members=3)
    wu = reproductions.get("wu2023_diffusion")
    _save(tmp_path, wu, "baseline", 0, 0.007)
    _save(tmp_path, wu, "rad", 0, None)
    _save(tmp_path, study.get("grad_clip"), "baseline", 0, 0.3)  # an ablation's run: not in these tables
    return tmp_path


def test_compare_sets_our_seeds_beside_the_published_number(store):
    table = compare(study.load_runs(store, "smoke"), WANG)
    assert list(table.arm) == ["baseline", "lra"] and list(table.seeds) == [3, 3]
    plain, lra = table.iloc[0], table.iloc[1]
    assert plain.published == 0.194 and plain.published_spread == 0.0391 and plain.source.startswith("paper")
    assert plain.rel_l2_mean == pytest.approx(0.7 / 3) and plain.rel_l2_std == pytest.approx(0.152752523)
    assert plain.rel_l2_geomean == pytest.approx(0.2) and plain.wall_time_s == pytest.approx(101.0)
    assert plain.verdict == MATCH  # 0.194 ± 0.0391 overlaps [0.1, 0.4]
    assert lra.verdict == MATCH and lra.paired_verdict == BETTER
    assert lra.ratio == pytest.approx((0.010 * 0.012 * 0.011 / 0.008) ** (1 / 3))
    assert plain.run_files.count(";") == 2 and "wang2021_helmholtz/helmholtz2d/baseline/seed0.json" in plain.run_files


def test_a_failed_run_fails_its_arm_and_the_paired_comparison(store):
    table = compare(study.load_runs(store, "smoke"), reproductions.get("wu2023_diffusion"))
    assert list(table.arm) == ["baseline", "rad"]  # rar_g has no runs: no row
    assert list(table.verdict) == [MATCH, FAILED]
    assert table.iloc[1].paired_verdict == FAILED and table.iloc[1].failed == 1
    assert table.iloc[0].source == UNCONFIRMED


def test_the_summary_is_rounded_and_names_the_verdicts(store):
    text = published.summary(study.load_runs(store, "smoke"), WANG)
    assert text.splitlines() == [
        "baseline: ours 2e-01 over 3 seeds, published 1.9e-01 (paper): matches within spread",
        "lra: ours 1e-02 over 3 seeds, published 1.4e-02 (paper): matches within spread; vs baseline x0.05 (better)"]


def test_the_notebook_table_shows_published_and_ours(store):
    shown = published.table(study.load_runs(store, "smoke"), WANG)
    assert list(shown.index) == ["baseline", "lra"]
    assert shown.loc["baseline", "published rel_l2"] == "1.94e-01 ± 3.9e-02 (10 runs)"
    assert shown.loc["baseline", "ours: mean ± std"] == "2.33e-01 ± 1.5e-01"
    assert shown.loc["baseline", "wall time / run"] == "101 s" and shown.loc["lra", "seeds"] == "3"
    assert shown.loc["lra", "wall time / run"] == "60 s (3 seeds together)"
    assert shown.loc["lra", "vs baseline (paired, 95 %)"].endswith(BETTER)


def test_write_tables_gathers_every_reproduction_and_the_report_keeps_them_apart(store):
    csv, md = published.write_tables(store, "smoke")
    assert (csv.name, md.name) == ("reproductions.csv", "reproductions.md")
    written = pd.read_csv(csv)
    assert list(zip(written.reproduction, written.arm)) == [
        ("wang2021_helmholtz", "baseline"), ("wang2021_helmholtz", "lra"), ("wu2023_diffusion", "baseline"),
        ("wu2023_diffusion", "rad")]
    text = md.read_text()
    assert "| wang2021_helmholtz | lra" in text and "factor 2" in text
    assert "- machine (where this report was built): " in text and "seeds per ablation: wang2021_helmholtz 3" in text
    assert "grad_clip" not in text  # the ablations' runs are not the reproductions' setting
    rep = report.gather(store, "smoke")
    assert {r.ablation for r in rep.runs} == {"grad_clip"}
    export.write_tables(rep)
    assert csv.is_file() and md.is_file()


def test_a_paired_comparison_with_one_seed_has_no_verdict(store):
    runs = [r for r in study.load_runs(store, "smoke") if r.seed == 0]
    assert compare(runs, WANG).iloc[1].paired_verdict == SAME
