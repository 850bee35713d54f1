"""Distral "KL + ent 1col" (Teh et al. 2017): the multi-task baseline of Knowledge Flow's Table 7 (Sec. 7.2).

    python -m papers.knowledge_flow.distral --out DIR --args '{tasks: [KungFuMaster, Hero, Seaquest],
        a2c: {total_steps: 40000000, seed: 0}, distral: {alpha: 0.5, beta: 3000}, eval: {episodes: 30}}'

The method (Teh et al. 2017, Sec. 2)
------------------------------------
Each task i has its own policy network pi_i (one "column": the A3C net Knowledge Flow's student uses), and
one shared *distilled* policy pi_0 (the same architecture, its own optimiser) ties them together. The joint
objective (Teh et al. Eq. 1, with c_KL = alpha / beta and c_Ent = (1 - alpha) / beta) is::

    J(pi_0, {pi_i}) = sum_i E_{pi_i} [ sum_t gamma^t ( r_i(a_t, s_t) + (alpha / beta) log pi_0(a_t|s_t)
                                                                   - (1 / beta)    log pi_i(a_t|s_t) ) ]

so every task learner runs the shared actor-critic (:class:`common.a2c.Learner`) on the **regularised
reward** (:func:`regularised_reward`)::

    r~_t = r_t + (alpha / beta) log pi_0(a_t|s_t) - (1 / beta) log pi_i(a_t|s_t)

inside its n-step returns (and so inside its advantages and value targets), with both log-probabilities
taken as constants (detached): the score-function gradient of the regularised return (Teh et al. Sec. 2,
the policy-gradient form; the direct gradient of -log pi_i has expectation 0). J depends on pi_0 only
through ``(alpha / beta) sum_i E[sum_t gamma^t log pi_0(a_t|s_t)]``, so pi_0 is trained by
**distillation**: the cross-entropy of pi_0 on the actions the task policies took, over all tasks' rollouts
of a round (:func:`distillation_loss`). The constant alpha / beta and the gamma^t
weights of that term are dropped (Adam is invariant to a constant factor; gamma^t-weighting the distillation
data is not done in practice). pi_0 never receives a gradient from a task's loss, nor a task net from pi_0's.

"1col" versus "2col": here pi_i is a network of its own (the paper's 1col); 2col would add pi_0's logits
to a task column's. "KL + ent" is alpha < 1 (alpha = 1 drops the entropy term: "KL" alone).

Choices the Knowledge Flow paper does not give (ours; README "Protocol and choices")
------------------------------------------------------------------------------------
* alpha = 0.5, beta = 3000 (config ``knowledge_flow.table7.distral``). Teh et al. search beta over a small
  grid per experiment; public re-implementations transcribe that grid as alpha in {0.5, 1}, beta in {1e3,
  3e3, 3e4}. We could not check the paper's appendix offline: alpha = 0.5 is the KL + ent setting, beta =
  3e3 the middle of that grid. Both are plain config values.
* The task learners keep the shared learner's A3C entropy bonus (``a2c.ent_coef``, as every Knowledge Flow
  run of the tier), so a task learner differs from the A3C baseline only by the Distral terms; the pure
  objective is ``a2c: {ent_coef: 0}``.
* Identical action spaces (Distral's assumption): every task plays the full 18-action Atari set
  (``protocol.full_action_space``, forced here); observation shapes must agree too (checked).
* pi_0's optimiser: the learners' (Adam, same learning rate and linear decay, same gradient-norm clip).
* Seeds: task 1 (whose policy m1 Table 7 reports) uses the run's seed, task i the seed + (i - 1) x
  :data:`TASK_SEED_OFFSET`; pi_0 is initialised from the seed + :data:`PI0_SEED_OFFSET`.
* Budget: each task learner gets ``a2c.total_steps`` env steps of its own task (the paper: 40M per task,
  120M in all).

Lock-step, checkpoints and exact resume (the pattern of papers/cdrl/collaborative.py)
-------------------------------------------------------------------------------------
One round = one update of each task learner in task order (each computes its regularised rewards with pi_0
as it is at the start of the round), then one pi_0 update on the three rollouts. The learners' own
checkpoint files are off; at every checkpoint boundary one file, ``<out>/checkpoint.pt``, is written
atomically with every learner's state, pi_0, pi_0's optimiser and the one global RNG state of that moment.
A rerun restores them all and continues bit-for-bit as the uninterrupted run (tests/test_kf_distral.py).

Layout: the run directory is task 1's learner directory (config.json, curve.csv, train_stats.csv with the
Distral statistics, model.pt = m1, final.json, eval.json: what the Knowledge Flow tables read) plus
``run.json``, ``task2/``, ``task3/`` (the other learners' files) and ``pi0/`` (model.pt = m0 and, with
``eval_pi0``, its score on task 1 in eval.json).
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.a2c import (A2CArgs, Hook, Learner, Rollout, check_lockstep, decay_lr, load_policy, make_optimizer,
                         optimizer_step, run_rounds, save_policy)
from common.cli import out_args_main
from common.checks import arg
from common.envs import dataclass_from_dict, make_vec_env
from common.evaluation import EvalProtocol, evaluate
from common.io import read_checkpoint, resolve_device, rng_state, seed_everything, set_rng_state, torch_save, write_json
from common.nets import make_net

TASK_SEED_OFFSET = 1000
"""task i (1-based) learns with seed + (i - 1) x this: task 1 keeps the run's seed"""
PI0_SEED_OFFSET = 500
"""pi_0's initial weights are drawn with seed + this (never a task's seed: those step by TASK_SEED_OFFSET)"""
FINAL_WINDOW = 0.9
"""final.json averages the Distral statistics over the updates that end past this fraction of training"""


@dataclass
class DistralArgs:
    """Distral's regularisation (Teh et al. 2017 Eq. 1): c_KL = alpha / beta, c_Ent = (1 - alpha) / beta."""

    alpha: float = arg(0.5, "[0, 1]")
    """share of the KL term in the regularisation; < 1 = 'KL + ent', 1 = 'KL' alone"""
    beta: float = arg(3000.0, "> 0")
    """inverse regularisation strength, 1 / (c_KL + c_Ent)"""

    @classmethod
    def from_dict(cls, d: dict) -> "DistralArgs":
        return dataclass_from_dict(cls, d, where="distral arguments")


@dataclass
class RunArgs:
    """One Distral run: a pure function of these (the seed is ``a2c.seed``)."""

    tasks: list = field(default_factory=lambda: ["KungFuMaster", "Hero", "Seaquest"])
    """the task games, task 1 first: its policy m1 is the one evaluated (Table 7: 'Distral's task 1 model')"""
    a2c: dict = field(default_factory=dict)
    """common.a2c.A2CArgs shared by every task learner (no 'game': the tasks give it); total_steps per task"""
    distral: dict = field(default_factory=dict)
    """DistralArgs fields"""
    eval: dict = field(default_factory=dict)
    """common.evaluation.EvalProtocol of the final evaluation (full_action_space is forced on)"""
    eval_pi0: bool = True
    """also evaluate the distilled policy m0 on task 1 (pi0/eval.json)"""

    @classmethod
    def from_dict(cls, d: dict) -> "RunArgs":
        a = dataclass_from_dict(cls, d, where="distral run arguments")
        if not isinstance(a.tasks, list) or len(a.tasks) < 2 or not all(isinstance(t, str) for t in a.tasks):
            raise ValueError(f"tasks must be a list of at least two games (task 1 first), got {a.tasks!r}")
        if "game" in a.a2c:
            raise ValueError("distral: drop a2c.game; the games are the tasks (task 1 first)")
        a.task_args(0)  # validates the a2c fields
        DistralArgs.from_dict(a.distral)
        EvalProtocol.from_dict(a.eval_protocol_dict())
        return a

    def task_args(self, i: int) -> A2CArgs:
        """A2CArgs of task i (0-based): its game, its seed, the full action set."""
        base = A2CArgs.from_dict({**self.a2c, "game": self.tasks[0]})
        protocol = {**base.protocol, "full_action_space": True}
        return A2CArgs.from_dict({**self.a2c, "game": self.tasks[i], "seed": base.seed + i * TASK_SEED_OFFSET,
                                  "protocol": protocol})

    def eval_protocol_dict(self) -> dict:
        return {**self.eval, "full_action_space": True}


def regularised_reward(reward: torch.Tensor, logp0: torch.Tensor, logp_i: torch.Tensor, alpha: float,
                       beta: float) -> torch.Tensor:
    """r + (alpha / beta) log pi_0(a|s) - (1 / beta) log pi_i(a|s): the per-step term of Teh et al. Eq. 1."""
    return reward + (alpha / beta) * logp0 - logp_i / beta


def distillation_loss(logits0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """-mean_t log pi_0(a_t|s_t) over the task policies' transitions: pi_0's part of Eq. 1 (cross-entropy)."""
    return -F.log_softmax(logits0, -1).gather(-1, actions.unsqueeze(-1)).squeeze(-1).mean()


class DistralHook(Hook):
    """Task i's side of Distral: its rollout's rewards become the regularised rewards (``rewards``), and pi_0's
    cross-entropy on that rollout is kept, with its graph, for the round's pi_0 update (``pending``).

    Adds no loss and no parameter to the task learner: pi_0 is not among the learner's parameters and both
    log-probabilities in the reward are detached, so the task's loss never reaches pi_0.
    """

    STATS = ("kl_to_pi0", "neg_logp", "pi0_cross_entropy")

    def __init__(self, pi0: nn.Module, args: DistralArgs, total_steps: int):
        self.pi0, self.args, self.total_steps = pi0, args, total_steps
        self.pending: torch.Tensor | None = None
        self.logs: dict = {}
        # running sums of the statistics over the whole run and over its last part (final.json)
        self.sums = {w: {"n": 0, **{k: 0.0 for k in self.STATS}} for w in ("all", "late")}

    def rewards(self, agent: nn.Module, rollout: Rollout) -> torch.Tensor:
        device = next(self.pi0.parameters()).device
        actions = rollout.actions.to(device)
        logits0 = self.pi0.forward_sequence(rollout.obs.to(device)).logits   # with grad: pi_0's distillation
        logp0 = F.log_softmax(logits0, -1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        self.pending = -logp0.mean()                                          # = distillation_loss(logits0, actions)
        logp0 = logp0.detach().cpu()
        a = self.args
        reward = regularised_reward(rollout.rewards, logp0, rollout.logp, a.alpha, a.beta)
        # log pi_i - log pi_0 on the taken actions: a sample estimate of KL(pi_i || pi_0) on the visited states
        stats = {"kl_to_pi0": (rollout.logp - logp0).mean().item(), "neg_logp": -rollout.logp.mean().item(),
                 "pi0_cross_entropy": self.pending.item()}
        self.logs = {**{f"distral/{k}": v for k, v in stats.items()},
                     "distral/reward_shift": (reward - rollout.rewards).mean().item()}
        for w in ("all", "late") if rollout.step > FINAL_WINDOW * self.total_steps else ("all",):
            self.sums[w]["n"] += 1
            for k, v in stats.items():
                self.sums[w][k] += v
        return reward

    def after_update(self, agent: nn.Module, batch) -> dict:
        return dict(self.logs)

    def final(self, agent: nn.Module) -> dict:
        """alpha, beta and the statistics averaged over the last tenth of training (all of it in a run too short
        to have one)."""
        late = self.sums["late"]["n"] > 0
        s = self.sums["late" if late else "all"]
        n = max(s["n"], 1)
        return {"distral": {"alpha": self.args.alpha, "beta": self.args.beta, "updates_averaged": s["n"],
                            "from_progress": FINAL_WINDOW if late else 0.0, **{k: s[k] / n for k in self.STATS}}}

    def state_dict(self) -> dict:
        return {"sums": {w: dict(v) for w, v in self.sums.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.sums = {w: dict(v) for w, v in state["sums"].items()}


def task_dir(out: Path, i: int) -> Path:
    """Task i's (0-based) learner directory: the run directory itself for task 1."""
    return out if i == 0 else out / f"task{i + 1}"


class Distral:
    """Task learners and pi_0 in lock-step, with one checkpoint for all (module docstring)."""

    def __init__(self, run_args: RunArgs, out_dir):
        self.run_args = run_args
        self.out = out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.args = DistralArgs.from_dict(run_args.distral)
        task_args = [run_args.task_args(i) for i in range(len(run_args.tasks))]
        a0 = task_args[0]
        device = resolve_device(a0.device)
        self.ckpt_path = out / "checkpoint.pt"
        ck = None
        if self.ckpt_path.exists():
            if any((task_dir(out, i) / "curve.csv").exists() for i in range(1, len(task_args))):
                print(f"[distral] {out}: a task learner finished but task 1 did not; its finished curve cannot be "
                      "resumed: starting afresh", file=sys.stderr, flush=True)
                self.ckpt_path.unlink()
            else:
                ck = read_checkpoint(self.ckpt_path, device)
        envs = []
        for a in task_args:
            envs.append(make_vec_env(a.game, a.num_envs, a.protocol, num_threads=a.env_threads))
        shapes = {(tuple(e.obs_shape), e.n_actions) for e in envs}
        if len(shapes) != 1:
            for e in envs:
                e.close()
            raise ValueError("Distral needs one state and action space for all tasks; got (obs shape, actions) "
                             + ", ".join(f"{a.game}: {(tuple(e.obs_shape), e.n_actions)}"
                                         for a, e in zip(task_args, envs)))
        obs_shape, n_actions = envs[0].obs_shape, envs[0].n_actions
        # pi_0 first, so that the hooks can hold it; its initial weights from its own seed
        seed_everything(a0.seed + PI0_SEED_OFFSET)
        self.pi0 = make_net(a0.net, obs_shape, n_actions).to(device)
        if getattr(self.pi0, "recurrent", False):
            raise ValueError(f"distral: a2c.net '{a0.net}' is recurrent; use a feed-forward net (a3c, nature, minatar)")
        self.pi0_opt = make_optimizer(a0, list(self.pi0.parameters()))
        self.hooks, self.learners = [], []
        for i, (a, env) in enumerate(zip(task_args, envs)):
            seed_everything(a.seed)
            net = make_net(a.net, obs_shape, n_actions).to(device)
            hook = DistralHook(self.pi0, self.args, a.total_steps)
            self.hooks.append(hook)
            self.learners.append(Learner(a, task_dir(out, i), agent=net, hook=hook, env=env, own_checkpoint=False,
                                         resume=None if ck is None else ck["tasks"][i]))
        # cannot differ (one a2c for all), checked as cA3C's collaborative mode does
        check_lockstep({f"task {i + 1} ({t})": lr for i, (t, lr) in enumerate(zip(run_args.tasks, self.learners))},
                       "distral task")
        if ck is not None:
            if len({c["update"] for c in ck["tasks"]}) != 1:  # cannot happen: one file holds them all
                raise RuntimeError(f"checkpoint {self.ckpt_path} holds learners at different updates")
            self.pi0.load_state_dict(ck["pi0"])
            self.pi0_opt.load_state_dict(ck["pi0_optimizer"])
            set_rng_state(ck["rng"])

    @property
    def round(self) -> int:
        """Rounds done = updates done by each learner (and by pi_0)."""
        return self.learners[0].update

    @property
    def done(self) -> bool:
        return self.learners[0].done

    def save_checkpoint(self) -> None:
        rng = rng_state()
        torch_save({"tasks": [lr.checkpoint_state(rng) for lr in self.learners], "pi0": self.pi0.state_dict(),
                    "pi0_optimizer": self.pi0_opt.state_dict(), "rng": rng, "round": self.round}, self.ckpt_path)

    def update_pi0(self, frac: float) -> float:
        """One pi_0 step on the round's rollouts of every task: the mean of their cross-entropies (equal sizes, so
        the mean over all transitions)."""
        a0 = self.learners[0].args
        if any(h.pending is None for h in self.hooks):
            raise RuntimeError("distral: a task learner did not hand pi_0 its rollout this round")
        loss = torch.stack([h.pending for h in self.hooks]).mean()
        for h in self.hooks:
            h.pending = None
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite pi_0 distillation loss ({loss.item()}) at round {self.round}: lower "
                                     f"lr (now {a0.lr}). The last checkpoint ({self.ckpt_path}) is kept; a rerun "
                                     "resumes from it.")
        decay_lr(self.pi0_opt, a0, frac)
        optimizer_step(self.pi0_opt, loss, list(self.pi0.parameters()), a0.max_grad_norm)
        return loss.item()

    def step_round(self) -> None:
        """One round: checkpoint (at a boundary), one update of each task learner, then one pi_0 update."""
        if self.learners[0].at_boundary:
            self.save_checkpoint()
        frac = self.round / self.learners[0].n_updates
        for lr in self.learners:
            lr.step()
        self.update_pi0(frac)

    def close(self) -> None:
        for lr in self.learners:
            lr.close()

    def train(self, stop_after_rounds: int | None = None) -> dict:
        """All rounds, then every output; `stop_after_rounds` simulates a killed job (tests)."""
        stopped = run_rounds(self, stop_after_rounds)
        if stopped is not None:
            return stopped
        first = self.learners[0]
        others = [lr.finish() for lr in self.learners[1:]]
        (self.out / "pi0").mkdir(exist_ok=True)
        save_policy(self.out / "pi0" / "model.pt", self.pi0, first.args, first.env, role="pi0",
                    tasks=list(self.run_args.tasks))
        result = first.finish()  # last: task 1's curve.csv marks the finished run
        self.ckpt_path.unlink(missing_ok=True)
        for lr in self.learners:  # the partial CSVs a resume would need, now that no checkpoint is left
            lr.cleanup()
        return {**result, "tasks": others}


def run(run_args: RunArgs, out_dir, stop_after_rounds: int | None = None) -> dict:
    """Train the task learners and pi_0, then evaluate m1 (and m0) on task 1 (eval.json, pi0/eval.json)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for f in (out / "eval.json", out / "pi0" / "eval.json"):
        f.unlink(missing_ok=True)  # a rerun never leaves a stale evaluation behind
    dis = Distral(run_args, out)
    resolved = [asdict(lr.args) for lr in dis.learners]
    a0 = dis.learners[0].args
    print(f"[distral seed {a0.seed}] tasks {' + '.join(run_args.tasks)} ({len(run_args.tasks)} learners in lock-step, "
          f"{a0.total_steps:,} steps each), alpha {dis.args.alpha}, beta {dis.args.beta}, "
          f"{dis.learners[0].env.n_actions} actions", file=sys.stderr, flush=True)
    write_json(out / "run.json", {**asdict(run_args), "a2c_resolved": resolved, "distral_resolved": asdict(dis.args),
                                  "pi0_seed": a0.seed + PI0_SEED_OFFSET})
    result = dis.train(stop_after_rounds)
    if "stopped_at_round" in result:
        return result
    protocol = EvalProtocol.from_dict(run_args.eval_protocol_dict())
    evals = {}
    for role, d in (("m1", out), ("m0", out / "pi0")):
        if role == "m0" and not run_args.eval_pi0:
            continue
        ev = evaluate(load_policy(d / "model.pt"), a0.game, protocol, seed=a0.seed)
        ev.update(policy=str(d / "model.pt"), method="distral", role=role, tasks=list(run_args.tasks))
        write_json(d / "eval.json", ev)
        evals[role] = ev["mean"]
        print(f"[{a0.game} seed {a0.seed}] eval (Distral {role}): {ev['mean']:.1f} ± {ev['std']:.1f} over "
              f"{ev['episodes']} games", file=sys.stderr, flush=True)
    return {**result, "eval_mean": evals["m1"], **({"pi0_eval_mean": evals["m0"]} if "m0" in evals else {})}


main = out_args_main("Train one Distral (KL + ent 1col) run and evaluate its task-1 policy.", RunArgs.from_dict, run,
                     out_help="run directory (task 1's learner directory)")


if __name__ == "__main__":
    from common.cli import run as cli_run

    cli_run(main)
