"""`cpikan bench derivatives` on a tiny size: one sane row per (dim, N); `cpikan bench gpu` (the device
check, tools/gpu-check.sh): its arguments, its refusal to fall back to the CPU, its table (--smoke on a CPU)."""

import math
import subprocess
from pathlib import Path

import pytest
import torch

import cpikan
from cpikan import bench, cli

GPU_CHECK = Path(__file__).resolve().parents[1] / "tools" / "gpu-check.sh"

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
    with pytest.raises(cpikan.ConfigError, match="'memory' is not valid; choose one of 'derivatives', 'gpu', 'seeds'"):
        bench.main("memory")
    with pytest.raises(cpikan.ConfigError, match="--points, --dims is not an option of `cpikan bench gpu`; its "
                                                 "options: --smoke"):
        bench.main("gpu", device="cpu", points="1000", dims="3")
    with pytest.raises(cpikan.ConfigError, match="--smoke is not an option of `cpikan bench derivatives`"):
        bench.main("derivatives", device="cpu", smoke=True)
    with pytest.raises(cpikan.ConfigError, match="unknown problem 'poisson9d'"):
        bench.main("seeds", device="cpu", problems="poisson9d")
    with pytest.raises(cpikan.ConfigError, match="device='auto' is not valid for the GPU check; choose 'cuda'"):
        bench.main("gpu", device="auto", smoke=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_gpu_check_without_cuda_fails_loudly_and_runs_nothing(capsys, bare_python, tmp_path):
    assert cli.main(["bench", "gpu", "--smoke"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "the GPU check needs CUDA" in err and "does not fall back to the CPU" in err and "--device cpu" in err
    done = subprocess.run([str(GPU_CHECK), "--smoke"], capture_output=True, text=True, cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin", "PYTHON": str(bare_python)})
    assert done.returncode == 2 and done.stdout == "" and "the GPU check needs CUDA" in done.stderr


def test_the_table_shows_a_dash_for_what_a_row_lacks():
    line = bench._check_line({"check": "amp", "problem": "poisson3d", "setting": "fp16", "note": "skipped"})
    assert line.split() == ["amp", "poisson3d", "fp16", "-", "-", "-", "skipped"]
    assert len(line) == len(bench.CHECK_HEADER) - len("note") + len("skipped")


@pytest.mark.slow
def test_gpu_check_script_runs_bare_on_the_cpu_when_asked_and_prints_one_table(bare_python, tmp_path):
    """The script on a venv with only torch, numpy and scipy, from another folder: --device cpu --smoke."""
    env = {"PATH": "/usr/bin:/bin", "PYTHON": str(bare_python)}
    done = subprocess.run([str(GPU_CHECK), "--device", "cpu", "--smoke"], capture_output=True, text=True, env=env,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    header, columns, rule, *rows, footer = done.stdout.splitlines()
    assert header.startswith(f"cpikan GPU check: device cpu, torch {torch.__version__}")
    assert columns == bench.CHECK_HEADER and set(rule) == {"-"}
    shown = [tuple(r.split()[:3]) for r in rows]
    assert shown == [("amp", p, m) for p in ("helmholtz2d", "poisson3d") for m in ("none", "bf16", "fp16")] + [
        ("derivatives", "poisson1d", "bench")] * 3 + [("diffusion", "diffusion1d", "full")] + [
        ("seeds", p, "S=2") for p in ("poisson1d", "helmholtz2d")]
    assert [r.split()[3] for r in rows[6:9]] == ["autograd", "taylor", "compiled"]
    assert "skipped: fp16 needs CUDA" in rows[2] and "FAILED" not in done.stdout
    assert all("the member-steps/s of 2 separate runs" in r for r in rows[10:])
    assert footer.startswith("10 of 10 checks ran in ")
