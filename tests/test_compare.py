"""`cpikan study compare`: two synthetic studies with known differences, matched and classified."""

import math

import pytest

from cpikan import cli
from cpikan.runs import RunResult, run_path
from cpikan.study import compare
from cpikan.study.verdicts import BETTER, SAME, WORSE

BASE = (0.2, 0.4, 0.6)  # the baseline's rel_l2 on seeds 0, 1, 2
# Per study and variant, the ratio variant / baseline on each seed (None: a failed run).
STUDIES = {
    "a": {("grad_clip", "max_norm_10"): (0.25, 0.2525, 0.255),  # better ...
          ("grad_clip", "max_norm_1"): (0.85, 0.9, 0.88),  # better, close to 1
          ("init", "kaiming"): (0.5, 0.505, 0.51),
          ("init", "orthogonal"): (0.2, 3.0, 1.0),  # too spread to tell
          ("init", "small_random"): (None, 1.0, 1.0)},
    "b": {("grad_clip", "max_norm_10"): (4.0, 4.04, 4.08),  # ... worse: a flip
          ("grad_clip", "max_norm_1"): (0.9, 1.1, 1.0),  # borderline: A's interval ends near 1
          ("init", "kaiming"): (0.5, 0.49, 0.51),  # agrees
          ("init", "orthogonal"): (0.3, 0.31, 0.29),  # other: a clear interval against a wide one
          ("init", "small_random"): (1.0, 1.01, 0.99)},  # other: failed in A
}


def _save(root, ablation, variant, seed, rel_l2, adam):
    """A run file with the judged metrics; `adam` also records rel_l2 after Adam (an L-BFGS phase ran)."""
    if rel_l2 is None:
        result = RunResult(config={}, status="failed", error="RuntimeError: boom")
    else:
        metrics = {"rel_l2": rel_l2, "time_per_epoch_ms": 10.0, "wall_time_s": 3.0, "peak_mem_mb": 100.0,
                   "lbfgs_iterations": 100, **({"rel_l2_adam": 10 * rel_l2} if adam else {})}
        result = RunResult(config={}, metrics=metrics)
    result.save(run_path(root, "quick", ablation, "poisson1d", variant, seed))


@pytest.fixture
def studies(tmp_path):
    """Profile folders A (its runs record rel_l2 after Adam) and B (older run files: they do not)."""
    for name, variants in STUDIES.items():
        for seed, base in enumerate(BASE):
            for ablation in ("grad_clip", "init"):
                _save(tmp_path / name, ablation, "baseline", seed, base, name == "a")
            for (ablation, variant), ratios in variants.items():
                ratio = ratios[seed]
                _save(tmp_path / name, ablation, variant, seed, None if ratio is None else base * ratio, name == "a")
    return tmp_path / "a" / "quick", tmp_path / "b" / "quick"


def test_rows_are_matched_by_ablation_problem_variant_and_metric_and_each_difference_is_classified(studies):
    table = compare.compare_studies(*studies)
    assert len(table) == 5 * 5 and not table.duplicated(compare.KEYS).any()
    assert int(table.compared.sum()) == 5 * 4  # rel_l2 after Adam: judged in A only
    assert set(table[~table.compared].metric) == {"rel_l2_adam"}
    differ = table[table.compared & ~table.agree].set_index(["variant", "metric"])
    assert differ.loc[("max_norm_10", "rel_l2"), ["verdict_a", "verdict_b", "kind"]].tolist() == [
        BETTER, WORSE, compare.FLIP]
    assert differ.loc[("max_norm_1", "rel_l2"), ["verdict_a", "verdict_b", "kind"]].tolist() == [
        BETTER, SAME, compare.BORDERLINE]
    assert compare.near_one(*differ.loc[("max_norm_1", "rel_l2"), ["low_a", "high_a"]])
    assert differ.loc[("orthogonal", "rel_l2"), ["verdict_a", "verdict_b", "kind"]].tolist() == [
        SAME, BETTER, compare.OTHER]
    assert set(differ.loc["small_random"].kind) == {compare.OTHER} and len(differ.loc["small_random"]) == 4
    assert len(differ) == 3 + 4
    agree = table[table.agree].set_index(["variant", "metric"])
    assert agree.loc[("kaiming", "rel_l2"), "verdict_a"] == BETTER
    assert (table.kind[table.agree] == "").all()


def test_the_printout_shows_both_intervals_of_each_differing_row_and_one_summary_line(studies):
    text = compare.format_comparison(compare.compare_studies(*studies))
    lines = text.splitlines()
    assert lines[-1] == ("20 rows compared (ablation, problem, variant, metric): 13 agree, 7 differ "
                         "(1 flip, 1 borderline, 5 other); 5 not judged in both")
    flip = next(line for line in lines if "grad_clip/max_norm_10 · poisson1d" in line)
    assert "rel_l2 end of run" in flip and "] better" in flip and "] worse" in flip and flip.endswith("flip")
    assert sum(line.endswith(" other") for line in lines) == 5


def test_the_same_study_twice_agrees_everywhere(studies):
    table = compare.compare_studies(studies[0], studies[0])
    assert table.agree.sum() == table.compared.sum() == len(table) == 5 * 5  # A records rel_l2 after Adam
    assert compare.format_comparison(table).splitlines()[0] == "no verdict differs"


@pytest.mark.parametrize("low, high, near", [(0.5, 0.9, True), (0.5, 0.79, False), (1.2, 3.0, True),
                                             (1.26, 3.0, False), (0.9, 5.0, True), (0.1, 10.0, False),
                                             (0.0, math.inf, False), (math.nan, math.nan, False)])
def test_an_interval_is_near_one_when_its_bound_nearest_one_is_within_a_factor_of_1_25(low, high, near):
    assert compare.near_one(low, high) == near


def test_the_cli_prints_the_comparison_and_wants_two_profile_folders(studies, capsys, tmp_path):
    assert cli.main(["study", "compare", *map(str, studies)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"A: {studies[0]}\nB: {studies[1]}\n") and "7 differ (1 flip, 1 borderline, 5 other)" in out
    assert cli.main(["study", "compare", str(studies[0])]) == 2
    assert "takes two profile folders" in capsys.readouterr().err
    assert cli.main(["study", "compare", str(studies[0]), str(tmp_path)]) == 2
    assert "holds no runs/ folder" in capsys.readouterr().err
    assert cli.main(["study", "report", str(studies[0])]) == 2
    assert "takes no folders" in capsys.readouterr().err
