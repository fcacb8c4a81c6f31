"""Paired-seed ratios, their t intervals and the verdict words, on data with a known answer."""

import math

import numpy as np
import pandas as pd
import pytest

from cpikan.study.verdicts import BETTER, FAILED, SAME, WORSE, interval_text, paired_ratio, verdicts


def test_interval_matches_the_t_formula_by_hand():
    base = np.array([1e-3, 2e-3, 4e-3])
    variant = base * np.exp([-0.1, 0.0, 0.1])
    r = paired_ratio(base, variant)
    half = 4.302652729911275 * 0.1 / math.sqrt(3)  # t_{2, 0.975} * sd / sqrt(n)
    assert r.ratio == pytest.approx(1.0)
    assert (r.low, r.high) == (pytest.approx(math.exp(-half)), pytest.approx(math.exp(half)))
    assert r.verdict == SAME and r.n == 3


def test_a_constant_factor_is_better_or_worse_with_a_point_interval():
    base = [1.0, 3.0, 0.2]
    assert paired_ratio(base, [0.5 * b for b in base]).verdict == BETTER
    assert paired_ratio(base, [2.0 * b for b in base]).verdict == WORSE
    r = paired_ratio(base, base)
    assert (r.ratio, r.low, r.high, r.verdict) == (1.0, 1.0, 1.0, SAME)


def test_one_seed_gives_no_verdict():
    r = paired_ratio([1.0], [0.01])
    assert r.verdict == SAME and r.high == math.inf


def test_pairs_are_what_counts_not_the_spread_between_seeds():
    base = [1e-4, 1e-2, 1.0]  # seeds differ by orders of magnitude ...
    variant = [0.9e-4, 0.88e-2, 0.91]  # ... but the variant is ~10 % better on every one of them
    assert paired_ratio(base, variant).verdict == BETTER


def test_time_resolution_absorbs_jitter_but_not_a_real_speedup():
    base = [10.0, 10.2, 9.9, 10.1]
    jitter = [10.2, 10.3, 10.1, 10.25]  # 1-2 % slower every time: within the timing resolution
    assert paired_ratio(base, jitter).verdict == WORSE
    assert paired_ratio(base, jitter, resolution=1.05).verdict == SAME
    assert paired_ratio(base, [5.0, 5.2, 4.9, 5.0], resolution=1.05).verdict == BETTER


def test_a_cost_interval_is_widened_by_the_resolution_and_must_clear_it():
    base = [10.0] * 5
    r = paired_ratio(base, [5.0] * 5, resolution=1.05)
    assert (r.low, r.high) == (pytest.approx(0.5 / 1.05), pytest.approx(0.5 * 1.05))
    spread = [9.4, 9.5, 9.6, 9.55, 9.45]  # 5 % faster: the t interval lies below 1, but within the resolution
    assert paired_ratio(base, spread).verdict == BETTER
    r = paired_ratio(base, spread, resolution=1.05)
    assert r.verdict == SAME and r.low < 1 < r.high


def test_a_failed_or_non_positive_value_fails():
    assert paired_ratio([1.0, 2.0], [math.nan, 1.0]).verdict == FAILED
    with pytest.raises(ValueError, match="same non-zero number"):
        paired_ratio([1.0, 2.0], [1.0])


def test_coverage_of_the_interval_is_about_95_percent():
    rng = np.random.default_rng(0)
    true_ratio, hits, trials = 0.8, 0, 2000
    for _ in range(trials):
        base = np.exp(rng.normal(-6, 1.0, size=4))
        variant = base * true_ratio * np.exp(rng.normal(0, 0.3, size=4))
        r = paired_ratio(base, variant)
        hits += r.low <= true_ratio <= r.high
    assert 0.93 <= hits / trials <= 0.97


def _runs(rows):
    return pd.DataFrame(rows, columns=["ablation", "problem", "variant", "seed", "status", "rel_l2",
                                       "time_per_epoch_ms", "wall_time_s"])


def test_verdicts_table_pairs_by_seed_and_marks_failures():
    rows = []
    for seed, (b, v) in enumerate([(1e-2, 5e-3), (2e-2, 1.1e-2), (4e-2, 1.9e-2)]):
        rows += [("clip", "p", "baseline", seed, "ok", b, 10.0 + seed, 5.0),
                 ("clip", "p", "half", seed, "ok", v, 10.0 + seed, 5.0),
                 ("clip", "p", "broken", seed, "failed" if seed == 1 else "ok", v, 10.0, 5.0)]
    table = verdicts(_runs(rows)).set_index("variant")
    assert table.loc["half", "rel_l2_verdict"] == BETTER
    assert table.loc["half", "time_per_epoch_ms_verdict"] == SAME
    assert table.loc["half", "seeds"] == 3
    assert table.loc["broken", "rel_l2_verdict"] == FAILED
    expected = (0.5 * 0.55 * 0.475) ** (1 / 3)  # geometric mean of the per-seed ratios
    assert table.loc["half", "rel_l2_ratio"] == pytest.approx(expected)
    assert interval_text(table.loc["half", "rel_l2_ratio"], table.loc["half", "rel_l2_low"],
                         table.loc["half", "rel_l2_high"]).startswith(f"{expected:.3g} [")


def test_forest_plot_draws_every_row_on_a_log_axis_with_a_line_at_one():
    from cpikan.study.figures import forest

    rows = []
    for seed, (b, v) in enumerate([(1e-2, 5e-3), (2e-2, 1.1e-2), (4e-2, 1.9e-2)]):
        rows += [("clip", "p", "baseline", seed, "ok", b, 10.0, 5.0), ("clip", "p", "half", seed, "ok", v, 10.0, 5.0),
                 ("clip", "p", "same", seed, "ok", b * (1 + 0.01 * (seed - 1)), 10.0, 5.0)]
    fig = forest(verdicts(_runs(rows)))
    drawn = {trace.name: list(trace.y) for trace in fig.data}
    assert drawn == {BETTER: ["other · clip/half · p"], SAME: ["other · clip/same · p"]}  # "other": not registered
    assert fig.layout.xaxis.type == "log"
    assert [shape.x0 for shape in fig.layout.shapes] == [1.0]


def test_a_variant_that_changes_nothing_is_no_detectable_difference_in_real_runs(tmp_path):
    """Real smoke runs, three seeds: the baseline config under a second name, and early stopping
    whose patience (1000) exceeds the 30 epochs (watching the held-out residual, a quarter as many
    points as the training set scored without a graph every 10 epochs, costs a few per cent). Runs
    are interleaved by seed, as `run_variants` does; the first run of the process is among them (its
    one-off costs must stay out of its times)."""
    from cpikan import run, study
    from cpikan.runs import run_path
    from cpikan.study.report import frame

    ablation = study.get("early_stopping")
    arms = {"baseline": ablation.variant("baseline"), "baseline_again": ablation.variant("baseline"),
            "patience_1000": ablation.variant("patience_1000")}
    for seed in range(3):
        for name, variant in arms.items():
            cfg = study.variant_config(ablation, variant, "poisson1d", "smoke", seed=seed, device="cpu", threads=1)
            run(cfg).save(run_path(tmp_path, "smoke", "early_stopping", "poisson1d", name, seed))
    runs = study.load_runs(tmp_path, "smoke")
    assert {r.result.metrics["stop_reason"] for r in runs} == {"max_epochs"}  # early stopping never fired
    table = verdicts(frame(runs)).set_index("variant")
    for name in ("baseline_again", "patience_1000"):
        row = table.loc[name]
        assert (row.seeds, row.rel_l2_ratio, row.rel_l2_verdict) == (3, 1.0, SAME)
    for name in ("baseline_again", "patience_1000"):
        row = table.loc[name]
        assert (row.time_per_epoch_ms_verdict, row.wall_time_s_verdict) == (SAME, SAME), \
            f"{name}: time ratios {row.time_per_epoch_ms_ratio:.3f}, {row.wall_time_s_ratio:.3f} against the baseline"


def test_a_bound_next_to_one_keeps_the_digits_that_keep_it_off_one():
    from cpikan.study.verdicts import interval_text
    assert interval_text(0.542, 0.294, 0.99961) == "0.542 [0.294, 0.9996]"
    assert interval_text(1.2, 1.0004, 1.5) == "1.2 [1.0004, 1.5]"
    assert interval_text(1.0, 1.0, 1.0) == "1 [1, 1]"
