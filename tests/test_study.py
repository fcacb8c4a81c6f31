"""The ablation registry, notebook parameters, runs of variants (failures, resume) and the batch runner."""

import json
from pathlib import Path

import nbformat
import papermill
import pytest
import torch
from nbformat.v4 import new_code_cell, new_notebook, new_output

import cpikan
from cpikan import problems, study
from cpikan.study import batch, reproductions, runner
from cpikan.config import PROFILES, ConfigError, diff, resolve
from cpikan.models import initial_network
from cpikan.runs import RunResult, build_problem
from cpikan.sampling import sample_points
from cpikan.study.registry import BASELINE

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
DECLARED = ["profile", "seeds", "first_seed", "problems", "device", "results_dir", "threads", "resume"]


# ---------------------------------------------------------------- registry

@pytest.mark.parametrize("name", study.names())
def test_every_variant_differs_from_the_baseline_in_exactly_the_keys_it_names(name):
    ablation = study.get(name)
    problems_ = {p for profile in PROFILES for p in ablation.problems[profile]}
    for problem in problems_:
        base = study.variant_config(ablation, ablation.variants[0], problem)
        for variant in ablation.variants[1:]:
            changed = diff(base, study.variant_config(ablation, variant, problem))
            assert set(changed) == set(variant.overrides), (name, variant.name)
            assert set(changed) <= set(ablation.keys), (name, variant.name)


def test_an_ablation_needs_the_text_of_its_notebook():
    problems_, seeds = {p: ("poisson1d",) for p in PROFILES}, dict.fromkeys(PROFILES, 1)
    with pytest.raises(ConfigError, match="ablation 'x' needs intro, figure, why for its notebook"):
        study.Ablation("x", ("train.amp",), (study.Variant("baseline"),), problems_, seeds, title="t", story="s")
    with pytest.raises(ConfigError, match="ablation 'x' needs a stage"):
        study.Ablation("x", ("train.amp",), (study.Variant("baseline"),), problems_, seeds, title="t", story="s",
                       intro="i", figure="f", why="w")


def test_a_base_setup_is_where_every_arm_starts():
    grad_clip = study.get("grad_clip")
    ablation = study.Ablation("x", grad_clip.keys, grad_clip.variants, grad_clip.problems, grad_clip.seeds,
                              title="t", intro="i", figure="f", story="s", why="w", stage="1 stability",
                              base={"smoke": {"model.arch": "scaled_pinn"}})
    base = study.variant_config(ablation, ablation.variants[0], "poisson1d", "smoke")
    clipped = study.variant_config(ablation, ablation.variant("max_norm_1"), "poisson1d", "smoke")
    assert diff(cpikan.RunConfig(problem="poisson1d"), base) == {"model.arch": ("scaled_cpikan", "scaled_pinn")}
    assert diff(base, clipped) == {"train.grad_clip": (None, 1.0)}
    assert study.variant_config(ablation, ablation.variants[0], "poisson1d", "quick").model.arch == "scaled_cpikan"
    with pytest.raises(ConfigError, match="unknown profiles"):
        study.Ablation("x", grad_clip.keys, grad_clip.variants, grad_clip.problems, grad_clip.seeds,
                       title="t", intro="i", figure="f", story="s", why="w", stage="1", base={"huge": {}})


@pytest.mark.parametrize("name", study.names())
def test_every_verdict_has_three_seeds_in_quick_and_five_in_full(name):
    ablation = study.get(name)
    assert ablation.seeds["quick"] >= 3 and ablation.seeds["full"] >= 5


@pytest.mark.parametrize("name", study.names())
def test_arms_that_keep_the_network_and_the_point_counts_start_from_the_baseline_s_weights_and_points(name):
    ablation = study.get(name)
    paired = [v for v in ablation.variants[1:]
              if not any(k.startswith(("model.", "sampling.n_")) or k == "dtype" for k in v.overrides)]
    for profile in ("quick", "full"):
        for problem in ablation.problems[profile]:
            start = {v.name: _start(study.variant_config(ablation, v, problem, profile, seed=2))
                     for v in (ablation.variants[0], *paired)}
            net, points = start.pop(BASELINE)
            for variant, (other_net, other_points) in start.items():
                assert all(torch.equal(a, b) for a, b in zip(net, other_net)), (profile, problem, variant)
                assert all(torch.equal(a, b) for a, b in zip(points, other_points)), (profile, problem, variant)


def _start(cfg):
    """The initial weights and the sampled points of a run of `cfg`, as run() builds them."""
    problem = build_problem(cfg)
    cfg = resolve(cfg, problem)
    net = initial_network(cfg, problem.box)
    s = cfg.sampling
    points = sample_points(problem, s.n_pde, s.n_bc, s.n_ic, [torch.Generator().manual_seed(cfg.seed)],
                           torch.device("cpu"), torch.float32)
    return list(net.state_dict().values()), [points.pde, *(c.x for c in points.conditions)]


def test_a_variant_that_only_clips_trains_from_the_baseline_s_start():
    ablation = study.get("grad_clip")
    base, clipped = (study.variant_config(ablation, v, "poisson1d", "smoke", seed=3, device="cpu")
                     for v in (ablation.variants[0], ablation.variant("max_norm_1")))
    first = [cpikan.run(cfg.override("train.epochs=1"), progress=False).history for cfg in (base, clipped)]
    assert first[0]["loss_pde"] == first[1]["loss_pde"] and first[0]["loss_bc"] == first[1]["loss_bc"]


def test_every_problem_is_in_a_batch_and_every_entry_has_a_notebook():
    """Every registered problem runs in the full profile, and in the quick profile but allen_cahn1d
    (167 s a quick run: three seeds of any ablation's arms would not fit the quick study's 30
    minutes; the adaptive_sampling entry says so): in an ablation (`cpikan study run`) or, for a
    problem only a paper's setup uses, in a reproduction (`cpikan study reproduce`)."""
    entries = [*study.ABLATIONS.values(), *study.REPRODUCTIONS.values()]
    for profile, left_out in (("quick", {"allen_cahn1d"}), ("full", set())):
        ran = {p for a in entries for p in a.problems[profile]}
        assert ran == set(problems.names()) - left_out, profile
    for name in study.names():
        assert (NOTEBOOKS / "ablations" / f"{name}.ipynb").is_file()
    for name in reproductions.names():
        assert (NOTEBOOKS / "reproductions" / f"{name}.ipynb").is_file()


STUDY_NOTEBOOKS = sorted([*(NOTEBOOKS / "ablations").glob("*.ipynb"), *(NOTEBOOKS / "reproductions").glob("*.ipynb")])


@pytest.mark.parametrize("path", STUDY_NOTEBOOKS, ids=lambda p: p.stem)
def test_study_notebook_declares_the_study_parameters_and_validates_them(path):
    declared = list(papermill.inspect_notebook(str(path)))
    assert declared == DECLARED
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    assert f'study.parameters("{path.stem}", globals())' in code[1].source
    assert len(code) <= 10 and not any("def " in c.source for c in code)


@pytest.mark.parametrize("path", [*STUDY_NOTEBOOKS, NOTEBOOKS / "report.ipynb"], ids=lambda p: p.stem)
def test_committed_notebooks_keep_only_checked_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and not cell.source.startswith(batch.CHECK_MARK):
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:40]
    checked = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith(batch.CHECK_MARK)]
    assert all(c.outputs and c.execution_count for c in checked)


def _section_key(key: str) -> str:
    """'sampling.batches.resample' -> 'sampling.batches': the depth `diff` reports."""
    return ".".join(key.split(".")[:2])


@pytest.mark.parametrize("name", reproductions.names())
def test_every_arm_differs_from_the_baseline_arm_in_its_overrides_and_sizes(name):
    entry = reproductions.get(name)
    for profile in PROFILES:
        problem = entry.problems[profile][0]
        sizes = entry.sizes.get(profile, {})
        base = study.variant_config(entry, entry.variants[0], problem, profile)
        for variant in entry.variants[1:]:
            if profile not in variant.profiles:
                continue
            own = {_section_key(k) for k in variant.overrides}
            named = own | {_section_key(k) for k in [*sizes.get(variant.name, {}), *sizes.get(entry.variants[0].name, {})]}
            changed = diff(base, study.variant_config(entry, variant, problem, profile))
            assert own <= set(changed) <= named, (name, profile, variant.name)


def test_an_arm_s_sizes_come_after_its_overrides_and_name_known_arms():
    wu = reproductions.get("wu2023_diffusion")
    quick = study.variant_config(wu, wu.variant("rad"), "forced_diffusion1d", "quick")
    assert quick.train.epochs == 50_000 and quick.sampling.adaptive_params == {
        "k": 1.0, "c": 1.0, "rounds": 40, "start": 10_000, "candidates": 10_000}
    assert study.variant_config(wu, wu.variant("baseline"), "forced_diffusion1d", "quick").train.epochs == 15_000
    with pytest.raises(ConfigError, match="has no variant 'radd'"):
        study.Ablation("x", wu.keys, wu.variants, wu.problems, wu.seeds, title="t", intro="i", figure="f", story="s",
                       why="w", stage="1", sizes={"quick": {"radd": {"train.epochs": 5}}})


def test_entries_are_found_by_name_and_each_command_takes_its_own():
    assert reproductions.entry("amp") is study.get("amp")
    assert reproductions.entry("wu2023_diffusion") is reproductions.get("wu2023_diffusion")
    with pytest.raises(ConfigError, match="unknown ablation 'wu'; valid: grad_clip.*or a reproduction: "
                                          "wang2021_helmholtz"):
        reproductions.entry("wu")
    with pytest.raises(ConfigError, match="unknown reproduction 'amp'; valid: wang2021_helmholtz"):
        study.run_reproductions("smoke", only=["amp"])
    with pytest.raises(ConfigError, match="unknown ablation 'wu2023_diffusion'"):
        study.run_study("smoke", only=["wu2023_diffusion"])


# ---------------------------------------------------------------- notebook parameters

def _namespace(**changes):
    values = {"profile": "smoke", "seeds": None, "first_seed": 0, "problems": None, "device": "cpu", "results_dir": "x",
              "threads": None, "resume": False}
    return {"In": [""], "Out": {}, "_": None, "Optional": object(), "study": study, **values, **changes}


def test_notebook_parameters_are_read_from_globals():
    params = study.parameters("grad_clip", _namespace(seeds=2, problems=["helmholtz2d"]))
    assert (params.seed_count, params.problem_list) == (2, ["helmholtz2d"])
    assert study.parameters("grad_clip", _namespace()).problem_list == ["poisson1d"]
    reproduction = study.parameters("wang2021_helmholtz", _namespace(profile="quick"))
    assert (reproduction.seed_count, reproduction.problem_list) == (10, ["helmholtz2d"])


def test_unknown_notebook_parameter_is_rejected():
    with pytest.raises(ConfigError, match=r"unknown notebook parameter 'seed'; valid: profile, seeds, first_seed, problems"):
        study.parameters("grad_clip", _namespace(seed=3))
    with pytest.raises(ConfigError, match=r"unknown notebook parameter 'extra'"):
        study.parameters("grad_clip", _namespace(extra={"a": [1, 2.0, None]}))


def test_notebook_objects_are_not_taken_for_parameters():
    """Re-running the validation cell after later cells defined `runs`, `params`, ... is fine."""
    runs = [study.StudyRun("grad_clip", "poisson1d", "baseline", 0, Path("x"), RunResult(config={}))]
    assert study.parameters("grad_clip", _namespace(runs=runs, params=object())).ablation == "grad_clip"


@pytest.mark.parametrize("change, message", [
    ({"profile": "huge"}, "profile='huge' is not valid; choose one of 'smoke', 'quick', 'full'"),
    ({"seeds": 0}, "seeds=0 is not valid"),
    ({"problems": ["poisson9d"]}, "unknown problem 'poisson9d'"),
    ({"device": "tpu"}, "device='tpu' is not valid"),
])
def test_bad_notebook_parameter_values_are_rejected(change, message):
    with pytest.raises(ConfigError, match=message):
        study.parameters("grad_clip", _namespace(**change))


def test_missing_notebook_parameter_and_unknown_ablation_are_errors():
    namespace = _namespace()
    del namespace["resume"]
    with pytest.raises(ConfigError, match="'resume' is not set"):
        study.parameters("grad_clip", namespace)
    with pytest.raises(ConfigError, match="unknown ablation 'clipping'; valid: grad_clip, amp"):
        study.parameters("clipping", _namespace())


# ---------------------------------------------------------------- runs

@pytest.fixture
def fake_run(monkeypatch):
    """Replace training by an instant batched run that records which arms ran (the config of their
    first seed, and `seeds`, their seeds); `fail` and `interrupt_after` steer it."""
    calls = []
    control = {"fail": None, "interrupt_after": None}

    def run_seeds(cfg, seeds, progress=False):
        if control["interrupt_after"] is not None and len(calls) == control["interrupt_after"]:
            raise KeyboardInterrupt
        calls.append(cfg)
        control.setdefault("seeds", []).append(list(seeds))
        if control["fail"] and control["fail"](cfg):
            raise RuntimeError(f"boom at grad_clip={cfg.train.grad_clip}")
        return [RunResult(config=resolve(cfg.override({"seed": seed}), build_problem(cfg)).to_dict(),
                          metrics={"rel_l2": 0.5}) for seed in seeds]

    monkeypatch.setattr(runner, "run_seeds", run_seeds)
    return calls, control


def _params(tmp_path, ablation="grad_clip", **kw):
    return study.StudyParameters(ablation, device="cpu", results_dir=str(tmp_path), **kw)


def test_a_run_that_raises_leaves_a_failed_file_and_the_others_run(tmp_path, fake_run):
    calls, control = fake_run
    control["fail"] = lambda cfg: cfg.train.grad_clip == 10.0
    runs = study.run_variants(_params(tmp_path, seeds=2), progress=False)
    assert [(r.variant, r.seed, r.result.status) for r in runs] == [
        ("baseline", 0, "ok"), ("baseline", 1, "ok"), ("max_norm_10", 0, "failed"), ("max_norm_10", 1, "failed"),
        ("max_norm_1", 0, "ok"), ("max_norm_1", 1, "ok")]
    failed = json.loads((tmp_path / "smoke/runs/grad_clip/poisson1d/max_norm_10/seed1.json").read_text())
    assert failed["status"] == "failed" and "RuntimeError: boom at grad_clip=10.0" in failed["error"]
    assert failed["config"]["train"]["grad_clip"] == 10.0


def test_each_arm_trains_its_seeds_as_one_batched_run_from_the_first_seed(tmp_path, fake_run):
    calls, control = fake_run
    runs = study.run_variants(_params(tmp_path, seeds=2, first_seed=10), progress=False)
    assert [c.train.grad_clip for c in calls] == [None, 10.0, 1.0]
    assert control["seeds"] == [[10, 11]] * 3
    assert [(r.variant, r.seed) for r in runs][:3] == [("baseline", 10), ("baseline", 11), ("max_norm_10", 10)]
    assert (tmp_path / "smoke/runs/grad_clip/poisson1d/max_norm_1/seed11.json").is_file()


def test_a_resumed_arm_trains_only_its_seeds_without_a_run_file(tmp_path, fake_run):
    calls, control = fake_run
    study.run_variants(_params(tmp_path, seeds=2, resume=True), progress=False)
    (tmp_path / "smoke/runs/grad_clip/poisson1d/max_norm_1/seed0.json").unlink()
    control["seeds"].clear()
    study.run_variants(_params(tmp_path, seeds=2, resume=True), progress=False)
    assert control["seeds"] == [[0]]


def test_an_interrupted_batch_resumes_with_only_the_missing_runs(tmp_path, fake_run):
    calls, control = fake_run
    control["interrupt_after"] = 2
    with pytest.raises(KeyboardInterrupt):
        study.run_variants(_params(tmp_path, "init", resume=True), progress=False)
    assert len(list(tmp_path.rglob("seed*.json"))) == 2
    control["interrupt_after"] = None
    calls.clear()
    runs = study.run_variants(_params(tmp_path, "init", resume=True), progress=False)
    assert [c.model.init for c in calls] == ["orthogonal", "small_random"]
    assert [r.variant for r in runs] == ["baseline", "kaiming", "orthogonal", "small_random"]
    calls.clear()
    study.run_variants(_params(tmp_path, "init", resume=True), progress=False)
    assert calls == []


def test_resume_reruns_failed_and_changed_runs_and_runs_each_ablation_s_own_baseline(tmp_path, fake_run):
    calls, control = fake_run
    control["fail"] = lambda cfg: cfg.train.grad_clip == 1.0
    study.run_variants(_params(tmp_path, resume=True), progress=False)
    path = tmp_path / "smoke/runs/grad_clip/poisson1d/max_norm_10/seed0.json"
    stale = json.loads(path.read_text())
    stale["config"]["train"]["epochs"] += 1  # e.g. the profile's sizes changed since
    path.write_text(json.dumps(stale))
    control["fail"], calls[:] = None, []
    study.run_variants(_params(tmp_path, resume=True), progress=False)
    assert sorted(c.train.grad_clip for c in calls) == [1.0, 10.0]
    calls.clear()
    study.run_variants(_params(tmp_path, "scheduler", resume=True), progress=False)
    assert "none" in [c.train.scheduler for c in calls]  # not grad_clip's baseline: timed in its own notebook
    assert (tmp_path / "smoke/runs/scheduler/poisson1d/baseline/seed0.json").is_file()


def test_cuda_only_variants_are_skipped_on_a_cpu_and_compiling_is_not_in_smoke(tmp_path, fake_run):
    runs = study.run_variants(_params(tmp_path, "amp"), progress=False)
    assert [r.variant for r in runs] == ["baseline", "bf16"]
    runs = study.run_variants(_params(tmp_path, "derivatives"), progress=False)
    assert [r.variant for r in runs] == ["baseline", "taylor"]


def test_load_runs_reads_the_store_in_registry_order(tmp_path, fake_run):
    study.run_variants(_params(tmp_path, "init"), progress=False)
    study.run_variants(_params(tmp_path), progress=False)
    loaded = study.load_runs(tmp_path, "smoke")
    assert [(r.ablation, r.variant) for r in loaded][:4] == [
        ("grad_clip", "baseline"), ("grad_clip", "max_norm_10"), ("grad_clip", "max_norm_1"), ("init", "baseline")]
    assert all(r.result.metrics == {"rel_l2": 0.5} for r in loaded)


# ---------------------------------------------------------------- batch runner

def _notebook(*sources, parameters='profile = "smoke"\nresults_dir = "."'):
    cells = [new_code_cell(parameters, metadata={"tags": ["parameters"]}), *map(new_code_cell, sources)]
    return new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                              "language": "python"}})


@pytest.mark.slow
def test_a_failing_notebook_is_recorded_and_the_batch_goes_on(tmp_path):
    folder = tmp_path / "notebooks" / "ablations"
    folder.mkdir(parents=True)
    nbformat.write(_notebook('raise RuntimeError("broken notebook")'), folder / "grad_clip.ipynb")
    nbformat.write(_notebook('open(f"{results_dir}/{profile}/amp.txt", "w").write("ran")'), folder / "amp.ipynb")
    outcomes = study.run_study("smoke", only=["grad_clip", "amp"], root=tmp_path / "reports",
                               notebooks=tmp_path / "notebooks")
    assert [(o.name, o.status) for o in outcomes] == [("grad_clip", "failed"), ("amp", "ok")]
    assert "RuntimeError: broken notebook" in outcomes[0].error
    assert (tmp_path / "reports/smoke/amp.txt").read_text() == "ran"
    recorded = json.loads((tmp_path / "reports/smoke/notebooks/batch.json").read_text())
    assert [o["status"] for o in recorded] == ["failed", "ok"]
    assert (tmp_path / "reports/smoke/notebooks/grad_clip.ipynb").is_file()


@pytest.mark.slow
def test_reproductions_run_through_the_same_batch_and_leave_their_table(tmp_path):
    folder = tmp_path / "notebooks" / "reproductions"
    folder.mkdir(parents=True)
    nbformat.write(_notebook('open(f"{results_dir}/{profile}/ran.txt", "w").write(profile)'),
                   folder / "wu2023_diffusion.ipynb")
    outcomes = study.run_reproductions("smoke", only=["wu2023_diffusion"], root=tmp_path / "reports",
                                       notebooks=tmp_path / "notebooks")
    assert [(o.name, o.status) for o in outcomes] == [("wu2023_diffusion", "ok")]
    assert (tmp_path / "reports/smoke/ran.txt").read_text() == "smoke"
    recorded = json.loads((tmp_path / "reports/smoke/notebooks/reproductions.json").read_text())
    assert [o["name"] for o in recorded] == ["wu2023_diffusion"]
    assert (tmp_path / "reports/smoke/tables/reproductions.md").read_text().startswith("(no runs)")


def test_run_study_rejects_unknown_ablations_and_executors(tmp_path):
    with pytest.raises(ConfigError, match="unknown ablation 'clip'"):
        study.run_study("smoke", only=["clip"], root=tmp_path)
    with pytest.raises(ConfigError, match="executor='spark' is not valid; choose one of local, dask"):
        study.run_study("smoke", only=["grad_clip"], root=tmp_path, executor="spark")
    with pytest.raises(ConfigError, match="no notebook folder"):
        study.run_study("smoke", root=tmp_path, notebooks=tmp_path)


@pytest.mark.slow
def test_papermill_with_an_unknown_parameter_fails_the_notebook(tmp_path):
    job = batch.NotebookJob("grad_clip", NOTEBOOKS / "ablations" / "grad_clip.ipynb", tmp_path / "out.ipynb",
                            {"seed": 3, "results_dir": str(tmp_path)})
    outcome = batch.execute(job)
    assert outcome.status == "failed" and "unknown notebook parameter 'seed'" in outcome.error
    assert not list(tmp_path.rglob("seed*.json"))


def _store(root):
    out = {}
    for path in sorted(Path(root).rglob("seed*.json")):
        data = json.loads(path.read_text())
        out[str(path.relative_to(root))] = (data["status"], data["config"], round(data["metrics"]["rel_l2"], 6))
    return out


@pytest.mark.slow
def test_the_dask_executor_writes_the_same_run_files_as_local(tmp_path):
    from distributed import LocalCluster

    study.run_study("smoke", only=["grad_clip"], root=tmp_path / "local")
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        outcomes = study.run_study("smoke", only=["grad_clip"], root=tmp_path / "dask", executor="dask",
                                   address=cluster.scheduler_address)
    assert [o.status for o in outcomes] == ["ok"]
    local, dask = _store(tmp_path / "local"), _store(tmp_path / "dask")
    assert len(local) == 3 and local == dask


def test_keep_checked_outputs_strips_everything_else(tmp_path):
    source = _notebook("print(1)", "# NBVAL_CHECK_OUTPUT\nprint(2)")
    executed = nbformat.from_dict(source)
    for count, (cell, text) in enumerate(zip(executed.cells, ["", "1\n", "2\n"]), start=1):
        cell.outputs = [new_output("stream", name="stdout", text=text)]
        cell.execution_count = count
    clean = batch.keep_checked_outputs(executed, source)
    assert [(c.outputs, c.execution_count) for c in clean.cells[:2]] == [([], None), ([], None)]
    assert clean.cells[2].outputs[0].text == "2\n" and clean.cells[2].execution_count == 3


def test_the_notebooks_folder_is_found_from_the_package():
    assert (batch.NOTEBOOKS / "report.ipynb").is_file()


def test_notebook_processes_keep_the_compile_cache_beside_cpikan_s_other_caches(monkeypatch, tmp_path):
    monkeypatch.setenv("CPIKAN_CACHE", str(tmp_path))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    assert batch.notebook_environment()["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "inductor")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/elsewhere")
    assert batch.notebook_environment()["TORCHINDUCTOR_CACHE_DIR"] == "/elsewhere"
