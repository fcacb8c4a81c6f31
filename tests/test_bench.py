"""`cpikan bench derivatives` on a tiny size: one sane row per (dim, N)."""

import math

import pytest
import torch

import cpikan
from cpikan import bench

TORCH_COMPILE_WARNINGS = [  # raised inside torch itself while it compiles
    "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning",
    "ignore:.*should not be instantiated:DeprecationWarning",
]


@pytest.mark.slow
@pytest.mark.filterwarnings(*TORCH_COMPILE_WARNINGS)
def test_tiny_table_has_sane_rows():
    rows = bench.derivative_rows(dims=(1, 3), points=(48,), repeats=2, warmup=1, hidden=(4,), degree=3,
                                 backend="aot_eager")
    assert [(r["dim"], r["points"]) for r in rows] == [(1, 48), (3, 48)]
    for r in rows:
        for key in ("autograd_ms", "taylor_ms", "compiled_ms", "compile_s"):
            assert math.isfinite(r[key]) and r[key] > 0, key
        assert r["speedup_taylor"] == pytest.approx(r["autograd_ms"] / r["taylor_ms"])
        assert r["speedup_compiled"] == pytest.approx(r["autograd_ms"] / r["compiled_ms"])
        assert r["max_rel_diff"] < 1e-5  # float32 engines agree
        assert r["threads"] == torch.get_num_threads() and r["device"] == "cpu"
    text = bench.format_rows(rows)
    assert "autograd ms" in text and len(text.splitlines()) == 4


def test_bad_arguments_are_config_errors():
    with pytest.raises(cpikan.ConfigError, match="comma-separated"):
        bench.main("derivatives", device="cpu", points="2000,many")
    with pytest.raises(cpikan.ConfigError, match="choose from 1, 2, 3"):
        bench.derivative_rows(dims=(4,), points=(8,))
    with pytest.raises(cpikan.ConfigError, match="derivatives"):
        bench.main("memory")
