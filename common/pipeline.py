"""Helpers the Snakemake rules share: the paper-independent config checks, game names, seed groups and the
evaluation protocol as JSON. Each paper checks its own config section from its own rules file (``plan.check`` or
``check_tier_config``, called at the top of ``papers/<paper>/rules.smk``); nothing here knows a paper."""

from __future__ import annotations

import json

from common.checks import Range, check_value
from common.envs import ale_game_id, make_vec_env


def check_config(config: dict) -> None:
    """The top-level keys every paper's rules read, checked when the Snakefile loads (before any paper's
    section), with the one-line error of :func:`common.checks.fail`."""
    for name in ("threads_per_run", "runs_per_job"):
        check_value("config", name, config.get(name), Range.parse(">= 1"), default=1)


def check_games(games) -> None:
    """Each game an Atari game ale-py ships a ROM for (CamelCase, as the papers write them) or a MinAtar id
    (``MinAtar/<Game>``); a clear error naming the first that is neither."""
    for g in games:
        if g.startswith("MinAtar/"):
            make_vec_env(g, 1).close()
        else:
            ale_game_id(g)


def seed_groups(n_seeds: int, runs_per_job: int) -> list[list[int]]:
    """Seeds 0..n_seeds-1 in consecutive groups of `runs_per_job` (the last may be shorter): one training job per
    group, run by the multi-run learner. A cell that needs fewer seeds than its group holds trains the whole group
    (choose runs_per_job dividing the seed counts to waste nothing)."""
    if runs_per_job < 1:
        raise ValueError(f"runs_per_job must be >= 1, got {runs_per_job}")
    return [list(range(i, min(i + runs_per_job, n_seeds))) for i in range(0, n_seeds, runs_per_job)]


def eval_protocol(section: dict | None) -> str:
    return json.dumps(section or {})
