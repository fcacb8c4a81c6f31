"""Error against training time: curves from run histories, time to reach the baseline's final
error, and the figure, on synthetic run files with a known answer."""

import math

import numpy as np
import pandas as pd
import pytest

from cpikan.runs import RunResult
from cpikan.study import figures, timeline
from cpikan.study.store import StudyRun
from cpikan.study.verdicts import SHARED_TIME_RESOLUTION, paired_ratio

# Adam rows, then L-BFGS rows; rel_l2 every other row (None: not evaluated there).
PHASE = ["adam"] * 4 + ["lbfgs"] * 2
CURVES = {"baseline": ([1, 2, 3, 4, 5, 6], [0.8, None, 0.4, None, 0.2, 0.1]),
          "patience_200": ([0.5, 1, 1.5, 2, 2.5, 3], [0.5, None, 0.2, None, 0.09, 0.05]),  # at 0.1 by t = 2.5
          "patience_1000": ([1, 2, 3, 4, 5, 6], [0.8, None, 0.5, None, 0.3, 0.2])}  # never at 0.1


def _run(variant, seed, times, errors, scale=1.0, members=1):
    history = {"epoch": list(range(len(times))), "phase": PHASE[:len(times)], "time_s": times,
               "rel_l2": [None if e is None else e * scale for e in errors]}
    path = f"runs/early_stopping/poisson1d/{variant}/seed{seed}.json"
    return StudyRun("early_stopping", "poisson1d", variant, seed, path,
                    RunResult(config={}, metrics={"rel_l2": errors[-1] * scale, "members": members},
                              history=history))


@pytest.fixture
def runs():
    """Three seeds; seed s scales every error by (1 + s), so each seed has its own target."""
    return [_run(v, s, t, e, 1 + s) for v, (t, e) in CURVES.items() for s in range(3)]


def test_a_curve_keeps_the_evaluated_rows_of_both_phases():
    curve = timeline.error_curve(_run("baseline", 0, *CURVES["baseline"]))
    assert list(curve.index) == [1, 3, 5, 6] and list(curve) == [0.8, 0.4, 0.2, 0.1]
    assert timeline.error_curve(StudyRun("a", "p", "v", 0, "x", RunResult(config={}, history={"loss": [1]}))).empty


def test_first_time_at_a_target_and_never():
    curve = pd.Series([0.5, 0.2, 0.3, 0.05], index=[1.0, 2.0, 3.0, 4.0])
    assert timeline.first_time_at(curve, 0.2) == 2.0 and timeline.first_time_at(curve, 0.01) == timeline.NEVER


def test_time_to_reach_pairs_seeds_with_the_baseline_final_error(runs):
    table = timeline.time_to_reach(runs).set_index("variant")
    fast = table.loc["patience_200"]
    assert (fast.seeds, fast.reached) == (3, 3)
    assert fast.target_rel_l2 == pytest.approx(0.2)  # median of 0.1 x (1, 2, 3)
    assert (fast.baseline_time_s, fast.time_s) == (6.0, 2.5)
    assert (fast.time_ratio, fast.time_low, fast.time_high) == (pytest.approx(2.5 / 6),) * 3  # the same on each seed
    assert len(fast.run_files.split(";")) == 6
    slow = table.loc["patience_1000"]
    assert (slow.reached, slow.time_s) == (0, math.inf) and math.isnan(slow.time_ratio) and math.isnan(slow.time_low)
    assert list(table.index) == ["patience_200", "patience_1000"]


def test_time_to_reach_is_never_when_most_seeds_never_get_there(runs):
    mixed = [r for r in runs if r.variant != "patience_1000"]
    mixed += [_run("patience_1000", 0, *CURVES["patience_200"]),
              *(_run("patience_1000", s, *CURVES["patience_1000"], 1 + s) for s in (1, 2))]
    row = timeline.time_to_reach(mixed).set_index("variant").loc["patience_1000"]
    assert (row.reached, row.time_s) == (1, math.inf)
    assert (row.time_ratio, row.time_low, row.time_high) == (pytest.approx(2.5 / 6), 0.0, math.inf)  # one seed


def test_the_time_ratio_is_the_paired_geometric_mean_over_the_seeds_that_got_there(runs):
    """Seed s of `uneven` reaches its target at time 1 + s (at 0.5 (1 + s) on seed 2, which never
    does): the ratio and its interval are `paired_ratio`'s over seeds 0 and 1 against the
    baseline's 6 s."""
    errors = [1.0, None, 1.0, None, 0.05, 0.05]
    uneven = [_run("uneven", s, [0.5, 0.5 + s / 2, 0.5 + s, 0.75 + s, 1 + s, 10], errors, 1 + s) for s in (0, 1)]
    uneven.append(_run("uneven", 2, [1, 2, 3, 4, 5, 6], [1.0, None, 1.0, None, 1.0, 1.0], 3))
    row = timeline.time_to_reach([*runs, *uneven]).set_index("variant").loc["uneven"]
    expected = paired_ratio([6.0, 6.0], [1.0, 2.0])
    assert (row.seeds, row.reached) == (3, 2)
    assert (row.time_ratio, row.time_low, row.time_high) == (pytest.approx(expected.ratio),
                                                             pytest.approx(expected.low), pytest.approx(expected.high))
    assert row.time_ratio == pytest.approx(math.sqrt(2) / 6) and row.time_low < row.time_ratio < row.time_high


def test_runs_without_error_history_have_no_time_to_reach():
    bare = [StudyRun("grad_clip", "poisson1d", v, 0, "x", RunResult(config={}, history={"loss": [1.0]}))
            for v in ("baseline", "max_norm_10")]
    table = timeline.time_to_reach(bare)
    assert table.empty and list(table.columns)[:3] == ["ablation", "problem", "variant"]


def test_grid_interpolates_in_log_and_holds_the_final_error():
    curve = pd.Series([1.0, 0.01], index=[1.0, 3.0])
    values = timeline.on_grid(curve, np.array([0.0, 1.0, 2.0, 3.0, 9.0]))
    assert math.isnan(values[0]) and values[1:] == pytest.approx([1.0, 0.1, 0.01, 0.01])


def test_error_against_time_draws_median_and_band_per_variant_and_the_target(runs):
    fig = figures.error_vs_time(runs)
    medians = [t for t in fig.data if t.name]
    assert [t.name for t in medians] == ["baseline", "patience_200", "patience_1000"]
    assert len(fig.data) == 2 * 3  # a band for each, three seeds
    assert fig.layout.yaxis.type == "log" and fig.layout.xaxis.title.text == "training time (s)"
    assert medians[0].y[-1] == pytest.approx(0.2) and medians[0].x[-1] == pytest.approx(6.0)
    assert [shape.y0 for shape in fig.layout.shapes] == [pytest.approx(0.2)]


def test_seeds_trained_together_widen_the_time_ratio_by_their_shared_clock_s_resolution():
    batched = [_run(v, s, t, e, 1 + s, members=3) for v, (t, e) in CURVES.items() for s in range(3)]
    fast = timeline.time_to_reach(batched).set_index("variant").loc["patience_200"]
    assert (fast.time_low, fast.time_ratio, fast.time_high) == (pytest.approx(2.5 / 6 / SHARED_TIME_RESOLUTION),
                                                                pytest.approx(2.5 / 6),
                                                                pytest.approx(2.5 / 6 * SHARED_TIME_RESOLUTION))
