"""Helpers the Snakemake rules share: config checks by name and run arguments as JSON."""

from __future__ import annotations

import json

from common.a2c import A2CArgs
from common.envs import ale_game_id, make_vec_env
from common.evaluation import EvalProtocol


def check_config(config: dict) -> None:
    """Fail at load time, naming the key or game, before any job starts."""
    kf = config["knowledge_flow"]
    A2CArgs.from_dict(kf["a2c"])
    EvalProtocol.from_dict(kf.get("eval"))
    from papers.knowledge_flow import plan as kf_plan
    from papers.knowledge_flow.method import KFArgs

    kf_plan.check(config)
    KFArgs.from_dict({k: v for k, v in kf.get("kf", {}).items() if k != "links"})
    if "cdrl" in config:
        from papers.cdrl import plan as cdrl_plan

        cdrl_plan.check(config)
    for g in (list(kf["games"]) + list(kf.get("table2", {})) + kf_plan.all_teacher_games(config)
              + kf_plan.table7_games(config)):
        if g.startswith("MinAtar/"):
            make_vec_env(g, 1).close()
        else:
            ale_game_id(g)


def a2c_args(section: dict, game: str, seed: int, threads: int, device: str) -> str:
    """The A2CArgs of one run as a JSON string for the command line."""
    d = dict(section, game=game, seed=int(seed), torch_threads=int(threads), device=device)
    A2CArgs.from_dict(d)
    return json.dumps(d)


def seed_groups(n_seeds: int, runs_per_job: int) -> list[list[int]]:
    """Seeds 0..n_seeds-1 in consecutive groups of `runs_per_job` (the last may be shorter): one training job per
    group, run by the multi-run learner. A cell that needs fewer seeds than its group holds trains the whole group
    (choose runs_per_job dividing the seed counts to waste nothing)."""
    if runs_per_job < 1:
        raise ValueError(f"runs_per_job must be >= 1, got {runs_per_job}")
    return [list(range(i, min(i + runs_per_job, n_seeds))) for i in range(0, n_seeds, runs_per_job)]


def eval_protocol(section: dict | None) -> str:
    return json.dumps(section or {})
