"""Which runs Knowledge Flow's RL tables need, and the arguments of each: pure functions of the config,
used by papers/knowledge_flow/rules.smk (and tested without Snakemake).

Table 2 (config ``knowledge_flow.table2``) maps each target game to its teachers, as the paper prints them::

    Alien: {expert: [Alien, SpaceInvaders], non_expert: [BankHeist, SpaceInvaders], finetune: BankHeist}

Every teacher is an *expert of its own game* (zoo kind ``expert``): "ours w/ expert" has one teacher that
is expert for the target game; "ours w/ non-expert" has two teachers that are not experts for the target
game; "Fine-tune" starts from one such teacher (paper, Sec. 4.1, text after Table 2).

Table 1 and the ablations (config ``knowledge_flow.experiments``) name their runs once each::

    fig9:
      paper_table: Fig. 9                # rows of reported.csv to compare with (final scores quoted in the text)
      games: [MsPacman, KungFuMaster, Boxing]
      seeds: 3                           # optional; default knowledge_flow.seeds
      baseline: false                    # also run and show the A3C baseline (paper column: baseline_columns)
      runs:                              # run name -> spec; the same name in two experiments is one shared run
        kf_sea_river: {teachers: [Seaquest, Riverraid], column: "w/ KL"}
        kf_sea_river_nokl: {teachers: [Seaquest, Riverraid], kf: {lambda2: 0.0}, column: "w/o KL"}

A spec may set ``kind`` (expert | untrained teachers, Fig. 8), ``algo`` (the zoo algorithm of its teachers:
``a2c`` teachers carry the Nature-DQN body, Fig. 10) and ``kf`` (KFArgs overrides, e.g. lambda2 0 for Fig. 9 or
theta_old ema for Fig. 11), which win over the sampled lambdas.

Table 7 (config ``knowledge_flow.table7``) names task triples, task 1 first::

    table7:
      triples: [[KungFuMaster, Hero, Seaquest], [Hero, Seaquest, Riverraid]]
      seeds: 3                           # optional; default knowledge_flow.seeds
      distral: {alpha: 0.5, beta: 3000}  # papers.knowledge_flow.distral.DistralArgs

Each triple gets a Distral run (papers/knowledge_flow/distral.py: the three tasks in lock-step, ``a2c.total_steps``
per task) in ``distral/<Task1+Task2+Task3>/seed<k>/``, and a Knowledge Flow run on task 1 with the experts of tasks
2 and 3 as teachers, named ``kf_<task2>_<task3>`` (:func:`table7_kf_method`) like any experiment run, so it is the
same run as a Table 1 / Fig. 8 run of that name and spec (the paper's Table 7 'Ours' numbers are its Table 1 and
Table 2 numbers). Both columns train ``knowledge_flow.a2c.total_steps`` steps per task, as in the paper.

Each run draws (lambda1, lambda2) from the paper's grids as a pure function of its seed
(:func:`papers.knowledge_flow.method.sample_lambdas`): seed k uses the same pair in every game and method,
so the methods are compared on equal draws.
"""

from __future__ import annotations

import json
import re

from common.a2c import A2CArgs
from common.evaluation import EvalProtocol
from common.pipeline import check_games
from common.zoo import teacher_dir as zoo_teacher_dir
from papers.knowledge_flow.method import KFArgs, sample_lambdas

# run-directory name -> (Table 2 column, key in config table2)
TABLE2 = {"kf_expert": ("Ours w/ expert", "expert"), "kf_non_expert": ("Ours w/ non-expert", "non_expert"),
          "finetune": ("Fine-tune", "finetune")}
BASELINE = "baseline"
COLUMNS = {"baseline": ["A3C baseline", "A3C"], **{m: [c] for m, (c, _) in TABLE2.items()}}
RUN_KEYS = {"teachers", "kind", "algo", "kf", "column"}
LAMBDA1_GRID = (0.05, 0.1, 0.5)    # Sec. 4.1
LAMBDA2_GRID = (0.001, 0.01, 0.05)
DISTRAL = "distral"
"""run-directory name of Table 7's Distral runs: distral/<Task1+Task2+Task3>/seed<k>/"""


def teacher_dir(config: dict, tier: str, game: str, kind: str = "expert", algo: str | None = None) -> str:
    """The tier's teacher of `game` (common.zoo.teacher_dir: the zoo's layout, so one teacher serves every paper)."""
    t = config["teachers"]
    return str(zoo_teacher_dir(algo or t["algo"], game, kind, t.get("seed", 0), tier=tier))


def experiments(config: dict) -> dict:
    return config["knowledge_flow"].get("experiments", {}) or {}


def table7(config: dict) -> dict:
    """The knowledge_flow.table7 block ({} when the tier does not run Table 7)."""
    return config["knowledge_flow"].get("table7") or {}


def table7_triples(config: dict) -> list[list[str]]:
    return [list(t) for t in table7(config).get("triples", [])]


def triple_name(triple) -> str:
    """'KungFuMaster+Hero+Seaquest': the run directory of a Distral run and the row of reported.csv's Table 7."""
    return "+".join(triple)


def table7_seeds(config: dict) -> int:
    return int(table7(config).get("seeds", config["knowledge_flow"]["seeds"]))


def table7_kf_method(triple) -> str:
    """The Knowledge Flow run of Table 7's 'Ours' column: task 1 with the experts of the other tasks as teachers."""
    return "kf_" + "_".join(re.sub(r"[^a-z0-9]", "", g.lower()) for g in triple[1:])


def table7_kf_specs(config: dict) -> dict[str, dict]:
    """run name -> spec of every Table 7 Knowledge Flow run (as an experiment run would write it)."""
    return {table7_kf_method(t): {"teachers": list(t[1:])} for t in table7_triples(config)}


def run_spec(config: dict, method: str) -> dict:
    """The spec of a run named in knowledge_flow.experiments or implied by table7 (check() makes names unambiguous)."""
    for exp in experiments(config).values():
        if method in exp["runs"]:
            return exp["runs"][method]
    t7 = table7_kf_specs(config)
    if method in t7:
        return t7[method]
    raise KeyError(f"run '{method}' is neither the baseline, a Table 2 method ({', '.join(TABLE2)}), a run "
                   "of knowledge_flow.experiments nor a Table 7 run")


def table2_methods(config: dict) -> list[str]:
    """The Table 2 columns this tier trains (knowledge_flow.table2_methods, default all three): a recording that tests
    one claim trains only its arms (config/recorded/kf-minatar-2core.yaml); the others are shown as not run."""
    chosen = list(config["knowledge_flow"].get("table2_methods", TABLE2))
    unknown = [m for m in chosen if m not in TABLE2]
    if unknown:
        raise ValueError(f"knowledge_flow.table2_methods: unknown {unknown}; choose from {list(TABLE2)}")
    return [m for m in TABLE2 if m in chosen]


def teachers(config: dict, method: str, game: str) -> list[tuple[str, str, str]]:
    """(game, kind, algo) of each teacher of one run, in link order (empty for the baseline)."""
    algo = config["teachers"]["algo"]
    if method == BASELINE:
        return []
    if method in TABLE2:
        entry = config["knowledge_flow"].get("table2", {}).get(game)
        if entry is None:
            raise KeyError(f"knowledge_flow.table2 has no entry for '{game}'")
        g = entry[TABLE2[method][1]]
        return [(t, "expert", algo) for t in ([g] if isinstance(g, str) else g)]
    spec = run_spec(config, method)
    return [(t, spec.get("kind", "expert"), spec.get("algo", algo)) for t in spec["teachers"]]


def teacher_games(config: dict, method: str, game: str) -> list[str]:
    """The teachers' games of one run (empty for the baseline)."""
    return [g for g, _, _ in teachers(config, method, game)]


def teacher_dirs(config: dict, tier: str, method: str, game: str) -> list[str]:
    return [teacher_dir(config, tier, g, kind, algo) for g, kind, algo in teachers(config, method, game)]


def all_teachers(config: dict) -> list[tuple[str, str, str]]:
    """Every (game, kind, algo) teacher this tier trains, sorted, once each."""
    found = {(g, "expert", config["teachers"]["algo"]) for g in config["knowledge_flow"].get("teacher_games", [])}
    for method, game in runs(config):
        found.update(teachers(config, method, game))
    return sorted(found)


def all_teacher_games(config: dict) -> list[str]:
    """Every game a teacher is trained on for this tier (sorted, once each)."""
    return sorted({g for g, _, _ in all_teachers(config)})


def experiment_cells(config: dict, name: str) -> list[tuple[str, str, int]]:
    """(method, game, seeds) of one experiment of knowledge_flow.experiments."""
    kf = config["knowledge_flow"]
    exp = experiments(config)[name]
    seeds = int(exp.get("seeds", kf["seeds"]))
    methods = ([BASELINE] if exp.get("baseline") else []) + list(exp["runs"])
    return [(m, g, seeds) for g in exp["games"] for m in methods]


def runs(config: dict) -> list[tuple[str, str]]:
    """(method, game) of every run cell: the baseline on every game, Table 2's methods on table2's games, and
    every experiment's runs; each once."""
    kf = config["knowledge_flow"]
    out = [(BASELINE, g) for g in kf["games"]]
    out += [(m, g) for g in kf.get("table2", {}) for m in table2_methods(config)]
    for name in experiments(config):
        out += [(m, g) for m, g, _ in experiment_cells(config, name)]
    out += [(table7_kf_method(t), t[0]) for t in table7_triples(config)]
    return list(dict.fromkeys(out))


def run_seeds(config: dict) -> list[tuple[str, str, int]]:
    """(method, game, seed) of every run, with the largest seed count any table asks of that cell."""
    kf = config["knowledge_flow"]
    n = {(m, g): int(kf["seeds"]) for m, g in [(BASELINE, g) for g in kf["games"]]
         + [(m, g) for g in kf.get("table2", {}) for m in table2_methods(config)]}
    for name in experiments(config):
        for m, g, s in experiment_cells(config, name):
            n[(m, g)] = max(n.get((m, g), 0), s)
    for t in table7_triples(config):
        cell = (table7_kf_method(t), t[0])
        n[cell] = max(n.get(cell, 0), table7_seeds(config))
    return [(m, g, s) for (m, g), k in n.items() for s in range(k)]


def lambdas(config: dict, seed: int) -> tuple[float, float]:
    kf = config["knowledge_flow"]
    return sample_lambdas(int(seed), kf.get("lambda1_grid", LAMBDA1_GRID), kf.get("lambda2_grid", LAMBDA2_GRID))


def run_args(config: dict, tier: str, method: str, game: str, seed: int, threads: int, device: str) -> str:
    """The RunArgs of one run (papers/knowledge_flow/train.py) as JSON for the command line."""
    kf = config["knowledge_flow"]
    a2c = dict(kf["a2c"], game=game, seed=int(seed), torch_threads=int(threads), env_threads=int(threads),
               device=device)
    A2CArgs.from_dict(a2c)
    if method == BASELINE:
        return json.dumps({"method": "baseline", "a2c": a2c})
    dirs = teacher_dirs(config, tier, method, game)
    if method == "finetune":
        return json.dumps({"method": "finetune", "a2c": a2c, "finetune_from": dirs[0]})
    l1, l2 = lambdas(config, seed)
    spec_kf = {} if method in TABLE2 else run_spec(config, method).get("kf", {})
    return json.dumps({"method": "kf", "a2c": a2c,
                       "kf": {**kf.get("kf", {}), "lambda1": l1, "lambda2": l2, **spec_kf, "teachers": dirs}})


def distral_args(config: dict, triple: str, seed: int, threads: int, device: str) -> str:
    """The RunArgs of one Distral run (papers/knowledge_flow/distral.py) as JSON; `triple` as triple_name writes it."""
    kf, t7 = config["knowledge_flow"], table7(config)
    a2c = dict(kf["a2c"], seed=int(seed), torch_threads=int(threads), device=device)
    return json.dumps({"tasks": triple.split("+"), "a2c": a2c, "distral": t7.get("distral", {}),
                       "eval": kf.get("eval", {}), "eval_pi0": bool(t7.get("eval_pi0", True))})


def table7_games(config: dict) -> list[str]:
    """Every game of Table 7's triples (sorted, once each)."""
    return sorted({g for t in table7_triples(config) for g in t})


def check_table7(config: dict) -> None:
    """Config errors in table7, named before any job starts."""
    from papers.knowledge_flow.distral import RunArgs as DistralRunArgs

    t7 = table7(config)
    if not t7:
        return
    for t in table7_triples(config):
        if len(t) < 2 or any("+" in g or "/" in g for g in t):
            raise ValueError(f"knowledge_flow.table7.triples: {t} must list at least two Atari games (task 1 first; "
                             "no '+' or '/' in a name)")
        DistralRunArgs.from_dict(json.loads(distral_args(config, triple_name(t), 0, 1, "cpu")))
    names = [triple_name(t) for t in table7_triples(config)]
    if len(set(names)) != len(names):
        raise ValueError(f"knowledge_flow.table7.triples lists a triple twice: {names}")


def check(config: dict) -> None:
    """Config errors in the knowledge_flow section, named before any job starts (papers/knowledge_flow/rules.smk
    calls it when it loads): the A3C, evaluation and Knowledge Flow arguments by name, table2, the experiments and
    table7 (:func:`check_runs`), and every game a run or teacher is trained on."""
    kf = config["knowledge_flow"]
    A2CArgs.from_dict(kf["a2c"])
    EvalProtocol.from_dict(kf.get("eval"))
    check_runs(config)
    KFArgs.from_dict({k: v for k, v in kf.get("kf", {}).items() if k != "links"})
    check_games(list(kf["games"]) + list(kf.get("table2", {})) + all_teacher_games(config) + table7_games(config))


def check_runs(config: dict) -> None:
    """Config errors in table2, the experiments and table7, named before any job starts."""
    kf = config["knowledge_flow"]
    table2_methods(config)
    for game, entry in kf.get("table2", {}).items():
        missing = [k for _, k in TABLE2.values() if k not in entry]
        if missing:
            raise KeyError(f"knowledge_flow.table2.{game} lacks {missing}: give expert (a list of teacher games, "
                           "one of them the target), non_expert (a list) and finetune (one game)")
        if not isinstance(entry["finetune"], str):
            raise ValueError(f"knowledge_flow.table2.{game}.finetune must be one game, got {entry['finetune']!r}")
    seen: dict[str, dict] = {}
    reserved = {BASELINE, *TABLE2}
    for name, exp in experiments(config).items():
        for key in ("games", "runs"):
            if not exp.get(key):
                raise KeyError(f"knowledge_flow.experiments.{name} needs '{key}'")
        for run, spec in exp["runs"].items():
            where = f"knowledge_flow.experiments.{name}.runs.{run}"
            if run in reserved or not re.fullmatch(r"kf_[a-z0-9_]+", run):
                raise ValueError(f"{where}: run names start with 'kf_' (lower case, digits, '_') and may not be "
                                 f"{sorted(reserved)}")
            unknown = set(spec) - RUN_KEYS
            if unknown or not spec.get("teachers"):
                raise KeyError(f"{where}: needs 'teachers' (a list of games) and knows only {sorted(RUN_KEYS)}; "
                               f"got {sorted(spec)}")
            same = {k: v for k, v in spec.items() if k != "column"}
            if run in seen and seen[run] != same:
                raise ValueError(f"{where} differs from another experiment's run of the same name ({seen[run]}); "
                                 "a shared run must have one spec: rename one of them")
            seen[run] = same
    for run, spec in table7_kf_specs(config).items():
        if run in seen and seen[run] != spec:
            raise ValueError(f"knowledge_flow.table7: its Knowledge Flow run '{run}' (teachers {spec['teachers']}) has "
                             f"the name of an experiment run with another spec ({seen[run]}): rename that run")
    check_table7(config)
