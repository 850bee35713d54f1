"""The Snakemake pipeline: a dry run of every tier, config errors that name the key, and a real smoke run."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def snake(*args, cwd=ROOT, check=True):
    r = subprocess.run([*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), *args], cwd=cwd, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


@pytest.mark.parametrize("tier", ["smoke", "default", "paper"])
def test_dry_run_every_tier(tier, tmp_path):
    r = snake("-n", "--cores", "2", "all", "--configfile", str(ROOT / f"config/{tier}.yaml"), "--directory", str(tmp_path))
    assert "kf_train" in r.stdout and "kf_table2" in r.stdout and "report" in r.stdout
    assert "kf_supervised_tables" in r.stdout  # every tier builds Tables 3-6, with absent datasets shown not run
    assert all(j in r.stdout for j in ("hpr_train", "hpr_table1", "hpr_sampling", "hpr_fig2"))  # H-PR
    assert "gas_image_table" in r.stdout and "gas_modes_table" in r.stdout and "gas_policy" in r.stdout  # GAS
    assert all(j in r.stdout for j in ("cdrl_expert", "cdrl_train", "cdrl_alignment", "cdrl_figure", "cdrl_fig5",
                                       "cdrl_last100"))  # cA3C
    assert "kf_table7" in r.stdout and "kf_distral" in r.stdout  # Table 7: Distral runs next to Knowledge Flow


def test_dry_run_slurm_profile(tmp_path):
    r = snake("-n", "--workflow-profile", str(ROOT / "profiles/slurm"), "all",
              "--configfile", str(ROOT / "config/paper.yaml"), "--directory", str(tmp_path))
    assert "slurm_partition" in r.stdout + r.stderr


def test_minatar_teachers_get_the_minatar_body_however_the_game_is_written(tmp_path):
    """H-PR names teachers by game (MinAtar/Breakout), GAS by slug (MinAtar-Breakout): both need the MinAtar body."""
    r = snake("-n", "-p", "--cores", "1", "results/hpr-minatar-2core/hpr_distillation/fig4.md",
              "--configfile", str(ROOT / "config/recorded/hpr-minatar-2core.yaml"), "--directory", str(tmp_path))
    teacher_cmds = [line for line in r.stdout.splitlines() if "common.zoo train" in line]
    assert len(teacher_cmds) == 2 and all("--body minatar" in c for c in teacher_cmds)
    r = snake("-n", "-p", "--cores", "1", "results/gas-2core/gan_simulator/policy.md",
              "--configfile", str(ROOT / "config/recorded/gas-2core.yaml"), "--directory", str(tmp_path))
    teacher_cmds = [line for line in r.stdout.splitlines() if "common.zoo train" in line]
    assert len(teacher_cmds) == 2 and all("--body minatar" in c for c in teacher_cmds)


def test_bad_config_names_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "config/smoke.yaml").read_text().replace("total_steps:", "total_stepz:"))
    r = snake("-n", "all", "--configfile", str(bad), "--directory", str(tmp_path), check=False)
    assert r.returncode != 0 and "total_stepz" in r.stderr + r.stdout and "total_steps" in r.stderr + r.stdout
    bad.write_text((ROOT / "config/smoke.yaml").read_text().replace("top_k:", "topk:"))
    r = snake("-n", "all", "--configfile", str(bad), "--directory", str(tmp_path), check=False)
    assert r.returncode != 0 and "topk" in r.stderr + r.stdout
    bad.write_text((ROOT / "config/smoke.yaml").read_text().replace("[Breakout, Seaquest]", "[Breakout, Seaquestt]"))
    r = snake("-n", "all", "--configfile", str(bad), "--directory", str(tmp_path), check=False)
    assert r.returncode != 0 and "Seaquestt" in r.stderr + r.stdout


@pytest.mark.slow
def test_smoke_pipeline_end_to_end(tmp_path):
    """The whole smoke tier, for real, in a scratch directory; then a rerun has nothing to do."""
    snake("--cores", "2", "all", "--configfile", str(ROOT / "config/smoke.yaml"), "--directory", str(tmp_path))
    report = (tmp_path / "results/smoke/report/index.md").read_text()
    assert "tier" in report and "A3C baseline" in report
    table = pd.read_csv(tmp_path / "results/smoke/knowledge_flow/table2.csv")
    ran = table[table.n_seeds > 0]
    # the baseline on both games; Knowledge Flow (expert / non-expert teachers) and fine-tuning on Breakout
    assert set(ran[ran.column == "A3C baseline"].row) == {"Breakout", "Seaquest"}
    for col in ("Ours w/ expert", "Ours w/ non-expert", "Fine-tune"):
        assert list(ran[ran.column == col].row) == ["Breakout"]
    refs = ran[ran.column.isin(["Random policy", "Teacher (expert)"])]
    assert (ran.drop(refs.index).n_seeds == 2).all()
    # the reference rows: a measured random policy on both games, and each game's own expert (both are teachers)
    assert sorted(zip(refs.column, refs.row)) == [("Random policy", "Breakout"), ("Random policy", "Seaquest"),
                                                   ("Teacher (expert)", "Breakout"), ("Teacher (expert)", "Seaquest")]
    assert (refs.n_seeds == 1).all() and refs.paper.isna().all()
    rnd = json.loads((tmp_path / "runs/smoke/knowledge_flow/random/Breakout/eval.json").read_text())
    assert rnd["episodes"] == 2 and float(refs[(refs.column == "Random policy") & (refs.row == "Breakout")].ours_topk.iloc[0]) == rnd["mean"]
    tch = json.loads((tmp_path / "runs/smoke/knowledge_flow/teachers/Breakout/eval.json").read_text())
    assert tch["protocol"] == rnd["protocol"]  # the teacher row is played as the students are (rule kf_teacher_eval)
    assert tch["policy"] == "teachers/smoke/ppo/Breakout/expert/seed0"
    assert float(refs[(refs.column == "Teacher (expert)") & (refs.row == "Breakout")].ours_topk.iloc[0]) == tch["mean"]
    assert "not run" in set(table.ours_topk.astype(str))  # the paper's other rows are shown, marked not run
    independence = (tmp_path / "results/smoke/knowledge_flow/independence.md").read_text()
    assert "KF w/ expert (ours) | Breakout | 2 |" in independence
    for fig in ("table2_curves.png", "pw_over_training.png"):
        assert (tmp_path / "figures/smoke/knowledge_flow" / fig).stat().st_size > 1000
    for game in ("Breakout", "Seaquest"):
        assert (tmp_path / f"teachers/smoke/ppo/{game}/expert/seed0/model.zip").exists()
    # an ablation: untrained teachers and lambda2 = 0, its table next to the paper's quoted Fig. 9 numbers
    fig9 = (tmp_path / "results/smoke/knowledge_flow/fig9_no_kl.md").read_text()
    assert "| MsPacman | w/o KL | w/o KL (ours) | 1215 |" in fig9 and "| Breakout | w/o KL | w/o KL (ours) | n/a |" in fig9
    nokl = json.loads((tmp_path / "runs/smoke/knowledge_flow/kf_untrained_nokl/Breakout/seed0/run.json").read_text())
    assert nokl["kf"]["lambda2"] == 0.0 and nokl["kf"]["teachers"] == ["teachers/smoke/ppo/Seaquest/untrained/seed0"]
    run = (tmp_path / "runs/smoke/knowledge_flow/kf_expert/Breakout/seed1/run.json").read_text()
    assert "teachers/smoke/ppo/Seaquest/expert/seed0" in run
    sup = pd.read_csv(tmp_path / "results/smoke/knowledge_flow/supervised_tables.csv")
    digits = sup[(sup.row == "digits (offline stand-in for MNIST)") & (sup.column == "Ours")].iloc[0]
    assert 0 <= float(digits.ours) <= 100 and digits.n_seeds == 2  # the offline digits presets ran
    mnist = sup[(sup.row == "MNIST") & (sup.column == "Ours")].iloc[0]
    assert mnist.ours.startswith("not run: dataset unavailable (expected data/MNIST/raw")  # no data here: not run
    assert "Tables 3-6" in report and (tmp_path / "figures/smoke/knowledge_flow/supervised_errors.png").exists()
    gas = pd.read_csv(tmp_path / "results/smoke/gan_simulator/images.csv")  # GAS: digits ran, MNIST rows not run
    assert set(gas.loc[gas.n_seeds > 0, "experiment"]) == {"digits", "digits_modes"}
    assert (gas.loc[(gas.experiment == "mnist") & (gas.method == "DAFL"), "published"] == 98.20).all()
    modes = pd.read_csv(tmp_path / "results/smoke/gan_simulator/modes.csv")
    assert {"DAFL", "ours (re-init + exemplar buffer)"} <= set(modes.method) and "c0: 5" in modes.columns
    policy = pd.read_csv(tmp_path / "results/smoke/gan_simulator/policy.csv")
    assert set(policy.game) == {"MinAtar/Breakout"} and {"teacher", "random policy"} <= set(policy.method)
    assert "Generative Adversarial Simulator" in report
    hpr = pd.read_csv(tmp_path / "results/smoke/hpr_distillation/table1.csv", keep_default_na=False)
    ran = hpr[hpr.n_seeds > 0]  # H-PR Table 1: 3 architectures and the teachers on Breakout and Pong
    assert set(ran.row) == {"Breakout", "Pong", "Geometric Mean"}
    assert set(ran.method) == {"teacher", "proposed", "dist", "amn"}
    fig4 = pd.read_csv(tmp_path / "results/smoke/hpr_distillation/fig4.csv")
    assert set(fig4.loc[fig4.table == "steps_to_threshold", "sampler"]) == {"H-PR", "PR", "Uniform"}
    for fig in ("fig3_curves", "fig4_curves", "fig5_curves", "fig2_state_values"):
        assert (tmp_path / f"figures/smoke/hpr_distillation/{fig}.png").stat().st_size > 1000
    assert (tmp_path / "teachers/smoke/dqn/Breakout/untrained/seed0/model.zip").exists() and "H-PR distillation" in report
    last100 = pd.read_csv(tmp_path / "results/smoke/cdrl/last100.csv", keep_default_na=False)  # cA3C
    collab = last100[last100.paper.astype(str) == "68.35"]  # Fig. 6d: the collaborative run, paper vs ours
    assert len(collab) == 1 and (collab.status == "ran").all()
    assert (tmp_path / "runs/smoke/cdrl/collaborative_bowling/seed0/source/curve.csv").exists()
    for fig in ("fig3_curves", "fig4_curves", "fig5_action_dists", "fig6_curves"):
        assert (tmp_path / f"figures/smoke/cdrl/{fig}.png").stat().st_size > 1000
    t7 = pd.read_csv(tmp_path / "results/smoke/knowledge_flow/table7.csv")   # Table 7: Distral m1 / m0 and KF ran
    ran = t7[t7.n_seeds > 0]
    assert set(ran.row) == {"Breakout+Seaquest+Breakout"} and set(ran.column) == {"Distral", "Ours", "Distral m0"}
    assert (tmp_path / "runs/smoke/knowledge_flow/distral/Breakout+Seaquest+Breakout/seed0/task3/curve.csv").exists()
    assert (tmp_path / "runs/smoke/knowledge_flow/kf_seaquest_breakout/Breakout/seed0/eval.json").exists()
    assert (tmp_path / "figures/smoke/knowledge_flow/supervised_pw.png").stat().st_size > 1000
    assert "Table 7" in report and "cA3C" in report
    r = snake("-n", "--cores", "2", "all", "--configfile", str(ROOT / "config/smoke.yaml"), "--directory", str(tmp_path))
    assert "Nothing to be done" in r.stdout + r.stderr


def test_runs_per_job_trains_a_cells_seeds_in_one_job(tmp_path):
    from common.pipeline import seed_groups

    assert seed_groups(5, 2) == [[0, 1], [2, 3], [4]] and seed_groups(3, 1) == [[0], [1], [2]]
    with pytest.raises(ValueError, match="runs_per_job must be >= 1"):
        seed_groups(3, 0)
    r = snake("-n", "-p", "--cores", "2", "all", "--configfile", str(ROOT / "config/smoke.yaml"),
              "--config", "runs_per_job=2", "--directory", str(tmp_path))
    assert "kf_train_seeds0_1" in r.stdout and "kf_train_seed0" not in r.stdout
    cmd = next(line for line in r.stdout.splitlines() if "knowledge_flow.train" in line and "baseline/Breakout" in line)
    assert "baseline/Breakout/seed0 runs/smoke/knowledge_flow/baseline/Breakout/seed1 --args '[" in cmd


def test_grouped_and_single_seed_jobs_write_each_seed_to_its_own_directory(tmp_path):
    """Real runs: a rule defined in a loop must not read the loop variable when its job runs (snakemake evaluates a
    rule's shell command then, when the variable holds the last group of the last loop)."""
    for rpj, d in ((1, tmp_path / "single"), (2, tmp_path / "grouped")):
        snake("--cores", "2", "runs/smoke/knowledge_flow/baseline/Breakout/seed1/model.pt",
              "--configfile", str(ROOT / "config/smoke.yaml"), "--config", f"runs_per_job={rpj}", "--directory", str(d))
        seeds = [0, 1] if rpj == 2 else [1]
        for s in seeds:
            cfg = json.loads((d / f"runs/smoke/knowledge_flow/baseline/Breakout/seed{s}/config.json").read_text())
            assert cfg["a2c"]["seed"] == s
        if rpj == 1:
            assert not (d / "runs/smoke/knowledge_flow/baseline/Breakout/seed0").exists()
