"""Which runs Knowledge Flow's RL tables need, and the arguments of each: pure functions of the config,
used by papers/knowledge_flow/rules.smk (and tested without Snakemake).

Table 2 (config ``knowledge_flow.table2``) maps each target game to its teachers, as the paper prints them::

    Alien: {expert: [Alien, SpaceInvaders], non_expert: [BankHeist, SpaceInvaders], finetune: BankHeist}

Every teacher is an *expert of its own game* (zoo kind ``expert``): "ours w/ expert" has one teacher that
is expert for the target game; "ours w/ non-expert" has two teachers that are not experts for the target
game; "Fine-tune" starts from one such teacher (paper, Sec. 4.1, text after Table 2).

Each run draws (lambda1, lambda2) from the paper's grids as a pure function of its seed
(:func:`papers.knowledge_flow.method.sample_lambdas`): seed k uses the same pair in every game and method,
so the methods are compared on equal draws.
"""

from __future__ import annotations

import json

from common.a2c import A2CArgs
from papers.knowledge_flow.method import sample_lambdas

# run-directory name -> (Table 2 column, key in config table2)
TABLE2 = {"kf_expert": ("Ours w/ expert", "expert"), "kf_non_expert": ("Ours w/ non-expert", "non_expert"),
          "finetune": ("Fine-tune", "finetune")}
BASELINE = "baseline"
COLUMNS = {"baseline": ["A3C baseline", "A3C"], **{m: [c] for m, (c, _) in TABLE2.items()}}
LAMBDA1_GRID = (0.05, 0.1, 0.5)    # Sec. 4.1
LAMBDA2_GRID = (0.001, 0.01, 0.05)


def teacher_dir(config: dict, tier: str, game: str) -> str:
    t = config["teachers"]
    return f"teachers/{tier}/{t['algo']}/{game}/expert/seed{t.get('seed', 0)}"


def teacher_games(config: dict, method: str, game: str) -> list[str]:
    """The teachers' games of one Table 2 run (empty for the baseline)."""
    if method == BASELINE:
        return []
    entry = config["knowledge_flow"].get("table2", {}).get(game)
    if entry is None:
        raise KeyError(f"knowledge_flow.table2 has no entry for '{game}'")
    g = entry[TABLE2[method][1]]
    return [g] if isinstance(g, str) else list(g)


def all_teacher_games(config: dict) -> list[str]:
    """Every game a teacher is trained on for this tier (sorted, once each)."""
    kf = config["knowledge_flow"]
    games = set(kf.get("teacher_games", []))
    for game in kf.get("table2", {}):
        for m in TABLE2:
            games.update(teacher_games(config, m, game))
    return sorted(games)


def runs(config: dict) -> list[tuple[str, str]]:
    """(method, game) of every Table 2 cell we run: the baseline on every game, the rest on table2's games."""
    kf = config["knowledge_flow"]
    out = [(BASELINE, g) for g in kf["games"]]
    out += [(m, g) for g in kf.get("table2", {}) for m in TABLE2]
    return out


def lambdas(config: dict, seed: int) -> tuple[float, float]:
    kf = config["knowledge_flow"]
    return sample_lambdas(int(seed), kf.get("lambda1_grid", LAMBDA1_GRID), kf.get("lambda2_grid", LAMBDA2_GRID))


def run_args(config: dict, tier: str, method: str, game: str, seed: int, threads: int, device: str) -> str:
    """The RunArgs of one run (papers/knowledge_flow/train.py) as JSON for the command line."""
    kf = config["knowledge_flow"]
    a2c = dict(kf["a2c"], game=game, seed=int(seed), torch_threads=int(threads), device=device)
    A2CArgs.from_dict(a2c)
    d = {"method": "kf" if method.startswith("kf_") else method, "a2c": a2c}
    teachers = [teacher_dir(config, tier, g) for g in teacher_games(config, method, game)]
    if method == "finetune":
        d["finetune_from"] = teachers[0]
    elif method != BASELINE:
        l1, l2 = lambdas(config, seed)
        d["kf"] = {**kf.get("kf", {}), "lambda1": l1, "lambda2": l2, "teachers": teachers}
    return json.dumps(d)


def check(config: dict) -> None:
    """Config errors in table2, named before any job starts."""
    kf = config["knowledge_flow"]
    for game, entry in kf.get("table2", {}).items():
        missing = [k for _, k in TABLE2.values() if k not in entry]
        if missing:
            raise KeyError(f"knowledge_flow.table2.{game} lacks {missing}: give expert (a list of teacher games, "
                           "one of them the target), non_expert (a list) and finetune (one game)")
        if not isinstance(entry["finetune"], str):
            raise ValueError(f"knowledge_flow.table2.{game}.finetune must be one game, got {entry['finetune']!r}")
