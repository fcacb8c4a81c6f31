"""Paired-seed ratios, their t intervals, p-values and the verdict words, per phase, and the error
rate of a whole table (Benjamini-Hochberg, FCR-adjusted intervals), on data with a known answer."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cpikan.study.verdicts import (ALPHA, BETTER, FAILED, ONE_PHASE, SAME, SHARED_TIME_RESOLUTION, WORSE,
                                   error_control, fcr_level, interval_text, judge, paired_ratio, verdicts)


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
    assert r.verdict == SAME and r.high == math.inf and r.p == 1.0


def test_the_p_value_is_the_t_test_s_and_agrees_with_the_interval_at_every_level():
    """p < 1 - L exactly when the interval at level L excludes 1, with and without a resolution."""
    base = np.array([1e-3, 2e-3, 4e-3, 3e-3])
    d = np.array([-0.3, -0.1, -0.25, 0.05])
    assert paired_ratio(base, base * np.exp(d)).p == pytest.approx(stats.ttest_1samp(d, 0.0).pvalue)
    rng = np.random.default_rng(1)
    for _ in range(300):
        n, resolution = int(rng.integers(2, 8)), float(rng.choice([1.0, 1.05, 1.3]))
        base = np.exp(rng.normal(0, 1, n))
        variant = base * np.exp(rng.normal(rng.normal(0, 0.3), 0.2, n))
        p = paired_ratio(base, variant, resolution=resolution).p
        for level in (0.5, 0.9, 0.95, 0.999):
            r = paired_ratio(base, variant, level, resolution)
            assert (r.verdict in (BETTER, WORSE)) == (r.high < 1 or r.low > 1) == (p < 1 - level)


def test_a_cost_s_p_value_tests_the_excess_over_the_resolution_and_is_capped_at_one():
    base = [10.0, 10.2, 9.9, 10.1]
    within = paired_ratio(base, [10.2, 10.3, 10.1, 10.25], resolution=1.05)  # ~1.5 % slower: inside 5 %
    assert within.p == 1.0 and within.verdict == SAME
    d = np.log([5.0, 5.2, 4.9, 5.0]) - np.log(base)
    beyond = paired_ratio(base, [5.0, 5.2, 4.9, 5.0], resolution=1.05)
    t = (abs(d.mean()) - math.log(1.05)) / (d.std(ddof=1) / 2)
    assert beyond.p == pytest.approx(2 * stats.t.sf(t, 3)) and beyond.verdict == BETTER
    assert paired_ratio([1.0, 2.0], [3.0, 6.0]).p == pytest.approx(0.0, abs=1e-12)  # the same log ratio each seed


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


def test_fcr_level_counts_the_rows_benjamini_hochberg_selects():
    # BH at 5 % over m = 4: thresholds 0.0125, 0.025, 0.0375, 0.05; the three smallest pass (step-up)
    assert fcr_level([0.001, 0.01, 0.03, 0.5, math.nan]) == pytest.approx(1 - 3 * 0.05 / 4)
    assert fcr_level([0.2, 0.5]) == pytest.approx(1 - 0.05 / 2)  # none selected: as if one were
    assert fcr_level([0.04]) == pytest.approx(0.95) and fcr_level([]) == pytest.approx(0.95)


def _study(rng, effects, sd=0.5):
    """One simulated table: per row 5 to 10 seeds of log ratios normal(effect, sd) around lognormal baselines."""
    pairs = []
    for effect in effects:
        n = int(rng.integers(5, 11))
        base = np.exp(rng.normal(-5, 1.0, n))
        pairs.append((base, base * np.exp(rng.normal(effect, sd, n))))
    return pairs


def _check_agreement(raw, adjusted):
    """Every row: its word, its printed interval and Benjamini-Hochberg's selection say the same."""
    p = np.array([r.p for r in raw])
    selected = stats.false_discovery_control(p) <= ALPHA
    level = 1 - max(int(selected.sum()), 1) * ALPHA / len(p)
    for r, a, pick in zip(raw, adjusted, selected):
        assert a.p == r.p and math.isclose(a.level, level)
        assert (a.verdict in (BETTER, WORSE)) == (a.high < 1 or a.low > 1) == pick
        assert a.verdict != BETTER or a.high < 1
        assert a.verdict != WORSE or a.low > 1
    return selected


def _mc_bound(rate, trials):
    return rate + 3 * math.sqrt(rate * (1 - rate) / trials)  # alpha plus three Monte Carlo standard errors


def test_under_the_complete_null_a_table_has_any_false_word_at_most_alpha_of_the_time():
    """40 rows, no true difference (errors: log ratio 0; costs: at the edge of the resolution, the
    worst case of their null): the share of tables with any better/worse word stays at or below
    alpha, where unadjusted 95 % intervals would give one in most tables."""
    rng = np.random.default_rng(2024)
    trials = 400
    for resolution, effect in ((1.0, 0.0), (1.05, math.log(1.05))):
        any_false = any_raw = 0
        for _ in range(trials):
            effects = effect * rng.choice([-1.0, 1.0], size=40)
            raw, adjusted = judge(_study(rng, effects, sd=0.3), resolution)
            any_false += _check_agreement(raw, adjusted).any()
            any_raw += any(r.verdict in (BETTER, WORSE) for r in raw)
        assert any_false / trials <= _mc_bound(ALPHA, trials), (resolution, any_false / trials)
        assert any_raw / trials > 0.5


def test_with_true_effects_the_false_discovery_proportion_averages_at_most_alpha():
    """40 rows, 12 of them with a true log ratio of -1 or +1, 28 without: the mean false discovery
    proportion (false better/worse words over all such words) stays at or below alpha, and most true
    effects are found."""
    rng = np.random.default_rng(7)
    trials, fdp, found = 300, [], []
    effects = np.array([-1.0] * 6 + [1.0] * 6 + [0.0] * 28)
    for _ in range(trials):
        raw, adjusted = judge(_study(rng, effects))
        selected = _check_agreement(raw, adjusted)
        false = selected & (effects == 0)
        fdp.append(false.sum() / max(selected.sum(), 1))
        found.append(selected[effects != 0].mean())
        words = [a.verdict for a in adjusted]
        assert all(w == (BETTER if e < 0 else WORSE) for w, e, s in zip(words, effects, selected) if s and e != 0)
    assert np.mean(fdp) <= ALPHA + 3 * np.std(fdp) / math.sqrt(trials)
    assert np.mean(found) > 0.5


def test_a_lone_small_p_value_is_a_finding_in_a_small_table_but_not_in_a_large_one():
    base = np.array([1.0, 2.0, 4.0, 3.0, 5.0])
    hint = (base, base * np.exp([-0.30, -0.12, -0.22, -0.05, -0.18]))  # p about 0.02
    nothing = [(base, base * np.exp([0.1, -0.1, 0.05, -0.05, 0.0]))] * 19
    alone = judge([hint])[1][0]
    assert alone.verdict == BETTER and alone.level == pytest.approx(0.95)
    raw, adjusted = judge([hint, *nothing])
    assert raw[0].verdict == BETTER and raw[0].high < 1  # the unadjusted 95 % interval excludes 1 ...
    assert adjusted[0].verdict == SAME and adjusted[0].low < 1 < adjusted[0].high  # ... the table's does not
    assert adjusted[0].level == pytest.approx(1 - 0.05 / 20)


def _phases(rows):
    return pd.DataFrame(rows, columns=["ablation", "problem", "variant", "seed", "status", "rel_l2_adam", "rel_l2",
                                       "lbfgs_iterations"])


def test_rel_l2_is_judged_after_adam_and_at_the_end_of_the_run():
    """`late` is twice better after Adam, but L-BFGS brings both arms to the same error; `none`
    ran no L-BFGS in either arm, so its end of run is its end of Adam, judged once; `old` comes from
    run files without rel_l2_adam."""
    rows = []
    for seed, b in enumerate([1e-2, 2e-2, 4e-2]):
        wobble = 1 + 0.02 * (seed - 1)
        rows += [("grad_clip", "p", "baseline", seed, "ok", b, b / 10, 1000),
                 ("grad_clip", "p", "late", seed, "ok", b / 2 * wobble, b / 10 * wobble, 1000),
                 ("init", "p", "baseline", seed, "ok", b, b, 0), ("init", "p", "none", seed, "ok", b / 2, b / 2, 0),
                 ("amp", "p", "baseline", seed, "ok", math.nan, b, 1000),
                 ("amp", "p", "old", seed, "ok", math.nan, b / 2 * wobble, 1000)]
    table = verdicts(_phases(rows)).set_index("variant")
    late, none, old = table.loc["late"], table.loc["none"], table.loc["old"]
    assert (late.rel_l2_adam_verdict, late.rel_l2_verdict) == (BETTER, SAME)
    assert late.rel_l2_adam_ratio == pytest.approx(0.5, rel=0.01) and late.rel_l2_adam_high < 1
    assert (none.rel_l2_adam_verdict, none.rel_l2_verdict) == (ONE_PHASE, BETTER)
    assert math.isnan(none.rel_l2_adam_ratio) and math.isnan(none.rel_l2_adam_p)
    assert (old.rel_l2_adam_verdict, old.rel_l2_verdict) == ("", BETTER)
    control = error_control(verdicts(_phases(rows))).set_index("metric")
    assert control.loc["rel_l2 after Adam", "rows judged"] == 1  # `none` and `old` are not judged there
    assert control.loc["rel_l2 end of run", "rows judged"] == 3


def test_the_table_keeps_p_values_levels_and_unadjusted_intervals_beside_the_printed_ones():
    rows = []
    for seed, (b, v) in enumerate([(1e-2, 5e-3), (2e-2, 1.1e-2), (4e-2, 1.9e-2)]):
        rows += [("clip", "p", "baseline", seed, "ok", b, 10.0, 5.0), ("clip", "p", "half", seed, "ok", v, 10.0, 5.0),
                 ("clip", "p", "same", seed, "ok", b * (1 + 0.01 * (seed - 1)), 10.0, 5.0)]
    table = verdicts(_runs(rows)).set_index("variant")
    half = table.loc["half"]
    pair = ([1e-2, 2e-2, 4e-2], [5e-3, 1.1e-2, 1.9e-2])
    raw = paired_ratio(*pair)
    assert (half.rel_l2_raw_low, half.rel_l2_raw_high, half.rel_l2_p) == (raw.low, raw.high, raw.p)
    level = fcr_level(table.rel_l2_p)
    assert half.rel_l2_level == level and level == pytest.approx(1 - 0.05 / 2)  # 1 of 2 rows selected
    adjusted = paired_ratio(*pair, level)
    assert (half.rel_l2_low, half.rel_l2_high) == (pytest.approx(adjusted.low), pytest.approx(adjusted.high))
    assert half.rel_l2_low < half.rel_l2_raw_low and half.rel_l2_high > half.rel_l2_raw_high
    assert half.rel_l2_adam_verdict == "" and math.isnan(half.rel_l2_adam_p)  # these runs did not record it


def test_seeds_trained_together_judge_their_one_shared_cost_with_the_shared_resolution():
    """Members of a batched run carry one time and one peak memory: se = 0, so without the shared
    resolution a 10 % jitter between two batched arms would be a certain `worse`."""
    arms = {"baseline": (10.0, 100.0), "jitter": (11.0, 108.0), "slow": (20.0, 100.0)}  # time, memory
    rows = [{"ablation": "clip", "problem": "p", "variant": variant, "seed": seed, "status": "ok", "rel_l2": b,
             "time_per_epoch_ms": time, "wall_time_s": time, "peak_mem_mb": memory, "members": 3}
            for seed, b in enumerate([1e-2, 2e-2, 4e-2]) for variant, (time, memory) in arms.items()]
    runs = pd.DataFrame(rows)
    table = verdicts(runs).set_index("variant")
    jitter, slow = table.loc["jitter"], table.loc["slow"]
    assert (jitter.time_per_epoch_ms_verdict, jitter.peak_mem_mb_verdict) == (SAME, SAME)
    assert (jitter.time_per_epoch_ms_low, jitter.time_per_epoch_ms_high) == (pytest.approx(1.1 / SHARED_TIME_RESOLUTION),
                                                                           pytest.approx(1.1 * SHARED_TIME_RESOLUTION))
    assert slow.time_per_epoch_ms_verdict == WORSE and slow.time_per_epoch_ms_p == 0
    alone = verdicts(runs.assign(members=1)).set_index("variant").loc["jitter"]  # one seed a run: seeds pair
    assert (alone.time_per_epoch_ms_verdict, alone.peak_mem_mb_verdict) == (WORSE, WORSE)
