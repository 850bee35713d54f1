"""Which runs the cA3C figures need, and the arguments of each: pure functions of the config (config ``cdrl``),
used by papers/cdrl/rules.smk and tested without Snakemake.

The experiments are the paper's, fixed here; the config sets budgets and the step schedules::

    cdrl:
      seeds: 3                       # runs per curve (Fig. 6: "averaged over 3 runs")
      experts: {steps: 20000000, seed: 100}      # Pong / Bowling experts (method a3c): teachers and offline F
      a2c: {total_steps: 20000000}   # every student and baseline run (over train.PAPER_A2C)
      ca3c: {}                       # CA3CArgs shared by every cA3C run (e.g. align_width)
      eval: {episodes: 30}
      alignment: {obs_steps: 20000, fit_steps: 20000}    # papers/cdrl/alignment.py AlignArgs
      schedule: {fig3b_until: 1000000, fig4_from: 0, fig6a_from: 0, fig6b: [4000000, 6000000], fig6c: [100000, 1000000],
                 fig6d: [3000000, 4000000], fig6d_until: 15000000}

Runs (``runs/<tier>/cdrl/<run>/seed<k>/``) and what each figure shows:

* Fig. 3 (Pong -> Pong): ``a3c_pong``; ``distill_only_pong`` (3a: the student learns from the teacher only);
  ``homogeneous_pong`` (3b: GAE + policy-head distillation during the first ``fig3b_until`` steps).
* Fig. 4 (Pong expert -> Bowling, no alignment, distilling from ``fig4_from``): ``a3c_bowling``;
  ``kd_policy_bowling`` (4a) and ``kd_distill_bowling`` (4b); and a control not in the paper,
  ``kd_policy_untrained_bowling``: 4a with the Pong net at initialisation as its teacher (``untrained_dir``:
  the expert's seed, never updated), which tells transferred skill from an action prior of the logits.
* Fig. 6 (Pong expert -> Bowling through F, distillation head): ``offline_bowling`` (6a, F fitted offline,
  distilling from ``fig6a_from``), ``online_late_bowling`` (6b, T1/T2 = 4M/6M), ``online_early_bowling``
  (6c, 0.1M/1M), beside ``a3c_bowling``; ``collaborative_bowling`` (6d, Sec. 5.4: Pong and Bowling from scratch
  together, the Bowling target distilling from the live Pong learner, T1/T2 = ``fig6d``, distillation until
  ``fig6d_until``; paper 3M/4M/15M; papers/cdrl/collaborative.py). Its run directory is the target's, with the
  source's files under ``source/``; it needs no expert. Its last-100 row is the one the paper's 68.35 belongs to.

The paper does not say when Fig. 4's direct distillation or Fig. 6a's offline-F distillation start; both
default to step 0 (no alignment to wait for), set by ``fig4_from`` / ``fig6a_from``.
"""

from __future__ import annotations

import json

from papers.cdrl.train import RunArgs

SOURCE, TARGET = "Pong", "Bowling"
# run -> (game, method, teacher game or None, schedule key or None)
RUNS = {
    "a3c_pong": (SOURCE, "a3c", None),
    "distill_only_pong": (SOURCE, "distill_only", SOURCE),
    "homogeneous_pong": (SOURCE, "homogeneous", SOURCE),
    "a3c_bowling": (TARGET, "a3c", None),
    "kd_policy_bowling": (TARGET, "kd_policy", SOURCE),
    "kd_distill_bowling": (TARGET, "kd_distill", SOURCE),
    "offline_bowling": (TARGET, "kd_distill", SOURCE),
    "online_late_bowling": (TARGET, "kd_distill", SOURCE),
    "online_early_bowling": (TARGET, "kd_distill", SOURCE),
    "collaborative_bowling": (TARGET, "collaborative", None),   # the source is a live learner, not an expert
    # control (not in the paper): Fig. 4a's KD-policy from the Pong net at initialisation, not the expert
    "kd_policy_untrained_bowling": (TARGET, "kd_policy", SOURCE),
}
UNTRAINED_TEACHER = {"kd_policy_untrained_bowling"}
"""runs whose teacher is the untrained net (untrained_dir), not the expert of the same game"""
LABELS = {
    "a3c_pong": "A3C", "distill_only_pong": "distillation only (3a)", "homogeneous_pong": "GAE + distillation (3b)",
    "a3c_bowling": "A3C", "kd_policy_bowling": "KD-policy (4a)", "kd_distill_bowling": "KD-distill (4b)",
    "offline_bowling": "cA3C offline F (6a)", "online_late_bowling": "cA3C online T1/T2 = fig6b (6b)",
    "online_early_bowling": "cA3C online T1/T2 = fig6c (6c)",
    "collaborative_bowling": "cA3C collaborative (6d)",
    "kd_policy_untrained_bowling": "KD-policy, untrained Pong teacher (control)",
}
FIGURES = {
    "fig3": {"title": "Fig. 3: online homogeneous distillation, Pong expert -> Pong student",
             "runs": ["a3c_pong", "distill_only_pong", "homogeneous_pong"]},
    "fig4": {"title": "Fig. 4: Pong expert -> Bowling student without alignment (KD-policy, KD-distill; control: "
                     "KD-policy from the untrained Pong net)",
             "runs": ["a3c_bowling", "kd_policy_bowling", "kd_distill_bowling", "kd_policy_untrained_bowling"]},
    "fig6": {"title": "Fig. 6: Pong -> Bowling through the deep alignment network (a-c: Pong expert, d: collaborative)",
             "runs": ["a3c_bowling", "offline_bowling", "online_late_bowling", "online_early_bowling",
                      "collaborative_bowling"]},
}
SCHEDULE_KEYS = ("fig3b_until", "fig4_from", "fig6a_from", "fig6b", "fig6c", "fig6d", "fig6d_until")


def expert_dir(config: dict, tier: str, game: str) -> str:
    return f"runs/{tier}/cdrl/expert_{game.lower()}/seed{expert_seed(config)}"


def untrained_dir(config: dict, tier: str, game: str) -> str:
    """The untrained teacher of a control run: the expert's initialisation (same seed), never updated."""
    return f"runs/{tier}/cdrl/untrained_{game.lower()}/seed{expert_seed(config)}"


def teacher_dir(config: dict, tier: str, run: str) -> str | None:
    """The teacher run directory a run distils from (None: a3c and collaborative)."""
    teacher = RUNS[run][2]
    if teacher is None:
        return None
    return (untrained_dir if run in UNTRAINED_TEACHER else expert_dir)(config, tier, teacher)


def expert_seed(config: dict) -> int:
    """The experts' seed (100 unless cdrl.experts.seed says otherwise; also for tiers without a cdrl section)."""
    return int(((config.get("cdrl") or {}).get("experts") or {}).get("seed", 100))


def alignment_dir(tier: str) -> str:
    return f"runs/{tier}/cdrl/alignment/{SOURCE.lower()}_to_{TARGET.lower()}"


def run_seeds(config: dict) -> list[tuple[str, int]]:
    """(run, seed) of every student and baseline run."""
    return [(r, s) for r in RUNS for s in range(int(config["cdrl"]["seeds"]))]


def ca3c_spec(config: dict, tier: str, run: str) -> dict:
    """The CA3CArgs of one run (teachers as run directories), shared overrides under the run's own keys."""
    game, method, teacher = RUNS[run]
    s = config["cdrl"]["schedule"]
    if method == "collaborative":
        return {**config["cdrl"].get("ca3c", {}), "align_from": int(s["fig6d"][0]), "distill_from": int(s["fig6d"][1]),
                "distill_until": int(s["fig6d_until"])}
    if teacher is None:
        return {}
    spec = {"distill_only_pong": {"distill_from": 0},
            "homogeneous_pong": {"distill_from": 0, "distill_until": int(s["fig3b_until"])},
            "kd_policy_bowling": {"use_alignment": False, "distill_from": int(s["fig4_from"])},
            "kd_distill_bowling": {"use_alignment": False, "distill_from": int(s["fig4_from"])},
            "kd_policy_untrained_bowling": {"use_alignment": False, "distill_from": int(s["fig4_from"])},
            "offline_bowling": {"distill_from": int(s["fig6a_from"]),
                                "offline_alignment": f"{alignment_dir(tier)}/alignment.pt"},
            "online_late_bowling": {"align_from": int(s["fig6b"][0]), "distill_from": int(s["fig6b"][1])},
            "online_early_bowling": {"align_from": int(s["fig6c"][0]), "distill_from": int(s["fig6c"][1])},
            }[run]
    return {**config["cdrl"].get("ca3c", {}), **spec, "teachers": [teacher_dir(config, tier, run)]}


def teacher_inputs(config: dict, tier: str, run: str) -> list[str]:
    """The files one run needs before it starts: its teacher's model.pt (and the offline F)."""
    teacher = teacher_dir(config, tier, run)
    files = [f"{teacher}/model.pt"] if teacher else []
    if run == "offline_bowling":
        files.append(f"{alignment_dir(tier)}/alignment.pt")
    return files


def _a2c(config: dict, game: str, seed: int, threads: int, device: str, **over) -> dict:
    return {**config["cdrl"].get("a2c", {}), **over, "game": game, "seed": int(seed), "torch_threads": int(threads),
            "device": device}


def run_args(config: dict, tier: str, run: str, seed: int, threads: int, device: str) -> str:
    """The RunArgs of one run (papers/cdrl/train.py) as JSON for the command line."""
    game, method, _ = RUNS[run]
    d = {"method": method, "a2c": _a2c(config, game, seed, threads, device), "ca3c": ca3c_spec(config, tier, run),
         "eval": config["cdrl"].get("eval", {})}
    if method == "a3c":
        d.pop("ca3c")
    if method == "collaborative":
        d["source"] = {"game": SOURCE}
    RunArgs.from_dict(d)
    return json.dumps(d)


def expert_args(config: dict, game: str, threads: int, device: str, method: str = "a3c") -> str:
    """An expert = an A3C run of this runner on the expert budget and seed (papers/cdrl/README.md); with method
    'untrained' the same arguments give the expert's initialisation, never updated (the Fig. 4 control's teacher)."""
    e = config["cdrl"]["experts"]
    d = {"method": method, "eval": config["cdrl"].get("eval", {}),
         "a2c": _a2c(config, game, e.get("seed", 100), threads, device, total_steps=int(e["steps"]))}
    RunArgs.from_dict(d)
    return json.dumps(d)


def untrained_args(config: dict, game: str, threads: int, device: str) -> str:
    """The untrained teacher: expert_args with method untrained (no update), the experts' seed (rule cdrl_expert,
    kind untrained)."""
    return expert_args(config, game, threads, device, method="untrained")


def check(config: dict) -> None:
    """Config errors in the cdrl section, named before any job starts."""
    c = config["cdrl"]
    s = c.get("schedule", {})
    missing = [k for k in SCHEDULE_KEYS if k not in s]
    if missing:
        raise KeyError(f"cdrl.schedule lacks {missing}: give fig3b_until, fig4_from, fig6a_from, fig6d_until (env "
                       "steps) and fig6b, fig6c, fig6d as [T1, T2]")
    total = int(c.get("a2c", {}).get("total_steps", 0))
    for k in ("fig6b", "fig6c", "fig6d"):
        if not (isinstance(s[k], list) and len(s[k]) == 2 and 0 <= s[k][0] <= s[k][1]):
            raise ValueError(f"cdrl.schedule.{k} must be [T1, T2] with 0 <= T1 <= T2 (the paper's T2 > T1), "
                             f"got {s[k]!r}")
        if s[k][1] >= total:
            raise ValueError(f"cdrl.schedule.{k}: T2 = {s[k][1]} is not below cdrl.a2c.total_steps = {total}: "
                             "the run would never distil; scale the schedule with the budget")
    if int(s["fig6d_until"]) < s["fig6d"][1]:
        raise ValueError(f"cdrl.schedule.fig6d_until = {s['fig6d_until']} is before fig6d's T2 = {s['fig6d'][1]}: "
                         "the collaborative target would never distil")
    for k in ("fig3b_until", "fig4_from", "fig6a_from"):
        if not 0 <= int(s[k]) < total:
            raise ValueError(f"cdrl.schedule.{k} = {s[k]} must be in [0, cdrl.a2c.total_steps = {total})")
    for run in RUNS:
        RunArgs.from_dict(json.loads(run_args(config, "check", run, 0, 1, "cpu")))
    for g in (SOURCE, TARGET):
        RunArgs.from_dict(json.loads(expert_args(config, g, 1, "cpu")))
    RunArgs.from_dict(json.loads(untrained_args(config, SOURCE, 1, "cpu")))
