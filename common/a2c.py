"""The shared on-policy learner: synchronous advantage actor-critic (A2C, the synchronous form of A3C).

One training loop for every actor-critic method in the repository. A paper changes it only through
a :class:`Hook` (extra loss terms, extra trainable modules, work after each update) and by passing its
own agent network; Knowledge Flow and cA3C are written that way.

Loss per update, on a rollout of ``n_steps`` x ``num_envs`` transitions::

    L = policy_loss + vf_coef * value_loss - ent_coef * entropy + sum(hook losses)
    policy_loss = -mean(log pi(a|s) * A),  value_loss = mean((R - V(s))^2) / 2 (``loss_reduction=sum`` sums)

with returns ``R = A + V`` from GAE(gamma, lambda) (lambda = 1 gives A3C's n-step returns).
``gae_loss = False`` drops the first three terms (only hook losses and hook steps train the agent).
A hook may also replace the rollout's rewards before the returns are computed (:meth:`Hook.rewards`,
Distral's regularised reward); the learner then records log pi(a_t|s_t) of the acting policy for it.

Checkpoints and exact resume
----------------------------
ale-py's vector env cannot save its emulator state, so checkpoints sit on *boundaries* every
``checkpoint_every`` env steps: there the learner saves model, optimiser, hook, step counters, RNG
states and the curve, then truncates all running episodes (bootstrapping from V, as for any truncation)
and reseeds the envs from ``(seed, boundary index)``. A run that resumes from boundary k therefore
continues bit-for-bit as the uninterrupted run did (tests/test_a2c.py checks it). The cost is one
truncated, unlogged episode per env per boundary.

Step-wise form, and many runs in one process
--------------------------------------------
:class:`Learner` is the loop one update at a time (``step``: collect -> update -> log), with ``finish`` writing
the outputs; :func:`train` is a ``Learner`` and a loop. ``Learner.many`` / :func:`train_many` train K runs (the seeds
of one config) in one process through the same code: one vector env of K x num_envs envs stepped on all the job's
threads, one agent, optimiser, hook and action sampler (its own ``torch.Generator``) per run, every network on its
own run's observations. On the CPU a run is therefore bit-for-bit the same alone or in a group of any K
(tests/test_multirun.py); a single run is K = 1. What it buys is measured in results/benchmarks.md ("Multi-run
learner"). A driver that runs several learners side by side (cA3C's collaborative mode, Distral) steps them in its
own order and keeps one checkpoint for all (``own_checkpoint=False``, ``checkpoint_state``, ``resume=``).
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from common.checks import arg, check_fields
from common.envs import AtariProtocol, Step, VecEnv, dataclass_from_dict, make_vec_env
from common.multirun import Overlapped, check_memory, make_engine
from common.io import (atomic_path, derive_seed, read_checkpoint, resolve_device, rng_state, seed_everything,
                       set_rng_state, torch_save, write_json)
from common.nets import NETS, check_net_for_game, make_net
from common.runlog import Boundaries, CsvLog, Progress

CURVE_FIELDS = ("env_steps", "frames", "wall_time", "episode_return", "episode_length")


@dataclass
class A2CArgs:
    """Arguments of one actor-critic run; a run is a pure function of (these, seed)."""

    game: str = "Pong"
    """Atari game in CamelCase (Pong, MsPacman) or MinAtar/<Game>"""
    net: str = arg("a3c", choices=tuple(NETS))
    """network: a3c | nature | minatar | ca3c (common/nets.py)"""
    total_steps: int = arg(1_000_000, ">= 1")
    """agent steps summed over envs (frames = steps x frameskip)"""
    num_envs: int = arg(16, ">= 1")
    """parallel envs: the synchronous stand-in for A3C's asynchronous actors"""
    n_steps: int = arg(5, ">= 1")
    """rollout length per env per update (A3C's t_max)"""
    gamma: float = arg(0.99, "[0, 1]")
    """discount"""
    gae_lambda: float = arg(1.0, "[0, 1]")
    """GAE lambda; 1.0 = A3C's n-step returns"""
    ent_coef: float = arg(0.01, ">= 0")
    """entropy bonus beta"""
    vf_coef: float = arg(0.5, ">= 0")
    """value-loss weight"""
    gae_loss: bool = True
    """False drops the actor-critic loss (policy, value, entropy) from the update: only the hook trains the agent
    (cA3C Fig. 3a's distillation-only student). Default True: the ordinary learner"""
    loss_reduction: str = arg("mean", choices=("mean", "sum"))
    """mean over the batch (A2C) or sum (the cA3C code sums over its rollout)"""
    optimizer: str = arg("adam", choices=("adam", "rmsprop"))
    """adam | rmsprop"""
    lr: float = arg(7e-4, "> 0")
    """initial learning rate"""
    lr_decay: bool = True
    """decay the learning rate linearly to 0 over total_steps"""
    adam_eps: float = arg(1e-5, "> 0")
    """Adam / RMSprop epsilon"""
    rmsprop_alpha: float = arg(0.99, "[0, 1)")
    """RMSprop smoothing"""
    max_grad_norm: float = arg(0.5, ">= 0")
    """global gradient-norm clip (0 = off)"""
    seed: int = 0
    """seeds torch, numpy, python and the envs"""
    device: str = "auto"
    """auto (GPU if present) | cpu | cuda"""
    torch_threads: int = arg(1, ">= 1")
    """intra-op CPU threads for torch (one single-thread job per core packs best)"""
    env_threads: int = arg(1, ">= 1")
    """ale-py emulator threads"""
    checkpoint_every: int = arg(250_000, ">= 0")
    """env steps between checkpoint boundaries (0 = none)"""
    stats_every: int = arg(10_000, ">= 1")
    """env steps between rows of train_stats.csv (losses, entropy, hook statistics)"""
    log_interval_s: float = arg(30.0, "> 0")
    """seconds between progress lines"""
    tensorboard: bool = False
    """also write TensorBoard scalars under <out>/tb"""
    protocol: dict = field(default_factory=dict)
    """environment protocol overrides (common.envs.AtariProtocol)"""

    def __post_init__(self):
        check_fields(self, "a2c arguments")  # also when built directly, A2CArgs(...), as the README's examples do

    @classmethod
    def from_dict(cls, d: dict) -> "A2CArgs":
        """Build and check (field ranges: common.checks; the net against the game's frames)."""
        args = dataclass_from_dict(cls, d, where="a2c arguments")
        check_net_for_game(args.net, args.game, AtariProtocol.from_dict(args.protocol), where="a2c arguments")
        return args


@dataclass
class Batch:
    """One rollout, as the loss and the hooks see it ([T, N] leading dims)."""

    obs: torch.Tensor
    actions: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    starts: torch.Tensor
    state0: tuple | None
    progress: float
    """fraction of training done at this update, in [0, 1]"""
    step: int
    """env steps so far"""


@dataclass
class Rollout:
    """One rollout before its returns are computed, as :meth:`Hook.rewards` sees it ([T, N] leading dims, CPU)."""

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    """training rewards (clipped per the protocol; frame-cap truncations already carry gamma * V(cut state))"""
    starts: torch.Tensor
    state0: tuple | None
    logp: torch.Tensor
    """log pi(a_t|s_t) of the acting policy (the agent's parameters of this update), no gradient"""
    progress: float
    step: int


def run_rounds(runner, stop_after_rounds: int | None = None) -> dict | None:
    """Drive learners that step in lock-step (cA3C's collaborative mode, Distral): call ``runner.step_round()``
    until ``runner.done``, then ``runner.close()``. `stop_after_rounds` stops early, as a killed job would (tests);
    it returns {'stopped_at_round': k} then, else None."""
    start = runner.round
    try:
        while not runner.done:
            if stop_after_rounds is not None and runner.round - start >= stop_after_rounds:
                return {"stopped_at_round": runner.round}
            runner.step_round()
    finally:
        runner.close()
    return None


class Hook:
    """How a paper extends the learner. Every method is optional."""

    def parameters(self) -> list[nn.Parameter]:
        """Extra trainable parameters that join the main optimiser (besides the agent's)."""
        return []

    def begin_update(self, agent: nn.Module, progress: float) -> None:
        """Called before each update's rollout with the training progress (update / n_updates), e.g. to move a
        schedule the forward reads (Knowledge Flow's teacher fade)."""

    def rewards(self, agent: nn.Module, rollout: Rollout) -> torch.Tensor:
        """The rewards the returns are computed from, in place of ``rollout.rewards`` (e.g. Distral's regularised
        reward). Only a hook that overrides this method makes the learner record ``rollout.logp``."""
        return rollout.rewards

    def loss(self, agent: nn.Module, batch: Batch, out) -> tuple[torch.Tensor | None, dict]:
        """Extra loss terms on this rollout; `out` is the agent's NetOut for it. Returns (loss, logs)."""
        return None, {}

    def after_update(self, agent: nn.Module, batch: Batch) -> dict:
        """Called after each optimiser step (e.g. refresh theta_old, step a side optimiser)."""
        return {}

    def lr_scales(self, agent: nn.Module) -> list[tuple[nn.Parameter, float]]:
        """(parameter, learning-rate multiplier) pairs; the others train at the learner's lr."""
        return []

    def final(self, agent: nn.Module) -> dict:
        """Written to <out>/final.json when training ends (before curve.csv marks the run finished)."""
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def gae(rewards, values, dones, last_value, gamma: float, lam: float):
    """Generalised advantage estimation (Schulman et al. 2016) over a [T, N] rollout.

    `dones[t]` is True where the transition at t ended the bootstrap chain (terminal). With lam = 1 the
    returns are A3C's n-step returns bootstrapped from `last_value`.
    """
    T = rewards.shape[0]
    adv = torch.zeros_like(rewards)
    last = torch.zeros_like(last_value)
    for t in reversed(range(T)):
        next_v = last_value if t == T - 1 else values[t + 1]
        nonterm = 1.0 - dones[t].float()
        delta = rewards[t] + gamma * next_v * nonterm - values[t]
        last = delta + gamma * lam * nonterm * last
        adv[t] = last
    return adv, adv + values


def env_seed(seed: int, boundary: int) -> int:
    """Env seed for segment `boundary` of run `seed` (a fresh, reproducible stream per segment)."""
    return derive_seed(seed, boundary) % (2**31 - 1)


def make_optimizer(args: A2CArgs, params) -> torch.optim.Optimizer:
    # foreach: one multi-tensor kernel per step instead of one per parameter (measurably faster on CPU)
    if args.optimizer == "adam":
        return torch.optim.Adam(params, lr=args.lr, eps=args.adam_eps, foreach=True)
    return torch.optim.RMSprop(params, lr=args.lr, alpha=args.rmsprop_alpha, eps=args.adam_eps, foreach=True)


def decay_lr(opt: torch.optim.Optimizer, args: A2CArgs, frac: float) -> None:
    """The learner's schedule at training fraction `frac`: lr x the group's ``lr_scale`` (1 if none) x (1 - frac)
    when ``args.lr_decay``, else unchanged."""
    if args.lr_decay:
        for g in opt.param_groups:
            g["lr"] = args.lr * g.get("lr_scale", 1.0) * (1.0 - frac)


def optimizer_step(opt: torch.optim.Optimizer, loss: torch.Tensor, params, max_grad_norm: float) -> float:
    """zero_grad, backward, clip the global gradient norm of `params` to `max_grad_norm` (0: no clipping), step;
    returns the norm before clipping (0.0 when not clipped)."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = nn.utils.clip_grad_norm_(params, max_grad_norm) if max_grad_norm > 0 else 0.0
    opt.step()
    return float(grad_norm)


def check_lockstep(learners: dict, what: str) -> None:
    """Learners that step in lock-step ({name: Learner}) must agree on env steps per update, updates and updates
    per checkpoint; a ValueError naming the differing ones otherwise."""
    shapes = {name: (lr.per_update, lr.n_updates, lr.ckpt_updates) for name, lr in learners.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"{what} learners must step in lock-step: they need the same num_envs x n_steps, total_steps "
                         f"and checkpoint_every, got (per update, updates, updates per checkpoint) {shapes}")


def save_policy(path, agent: nn.Module, args: A2CArgs, env: VecEnv, **meta) -> None:
    """A plain policy file: the net's name, shapes, protocol and weights (loadable by load_policy)."""
    torch_save({"net": args.net, "obs_shape": tuple(env.obs_shape), "n_actions": env.n_actions,
                "game": args.game, "protocol": args.protocol,
                "state_dict": {k: v.detach().cpu() for k, v in agent.state_dict().items()}, **meta}, path)


def load_policy(path, device="cpu") -> nn.Module:
    """Load a policy file written by save_policy; a clear error if it is missing or corrupt."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"policy file {path} does not exist: train it first (see README, 'Pipeline').")
    try:
        d = torch.load(path, map_location=device, weights_only=False)
        net = make_net(d["net"], d["obs_shape"], d["n_actions"])
        net.load_state_dict(d["state_dict"])
    except Exception as e:  # noqa: BLE001 - any failure here means the file is unusable
        raise RuntimeError(f"policy file {path} is corrupt or incompatible ({e}); delete it and rerun "
                           "the rule that produces it.") from e
    return net.to(device).eval()


@dataclass
class RunSpec:
    """One run of a multi-run :class:`Learner`: its arguments, run directory and (optionally) agent and hook.

    An agent left as None is built here from ``args.net`` after seeding the global RNG with ``args.seed``, exactly
    as a single run builds it; a caller that builds its own agent seeds with :func:`common.io.seed_everything`
    first (papers/knowledge_flow/train.py)."""

    args: A2CArgs
    out_dir: str | os.PathLike
    agent: nn.Module | None = None
    hook: Hook | None = None
    resume: dict | None = None
    """a checkpoint_state() to continue from (drivers that keep their own checkpoint, own_checkpoint=False)"""


# fields every run of one Learner must share: they fix the one vector env and the one update schedule
SHARED_FIELDS = ("game", "net", "protocol", "num_envs", "n_steps", "total_steps", "checkpoint_every", "device")


def check_group(args_list: list[A2CArgs], what: str = "runs trained in one job") -> None:
    """The runs of one Learner must agree on SHARED_FIELDS; a ValueError naming the field and the runs otherwise."""
    for name in SHARED_FIELDS:
        values = [getattr(a, name) for a in args_list]
        if any(v != values[0] for v in values):
            per_run = ", ".join(f"seed {a.seed}: {getattr(a, name)!r}" for a in args_list)
            raise ValueError(f"{what} must agree on '{name}' (they share one vector env and one update schedule), "
                             f"got {per_run}. Train runs that differ in '{name}' in separate jobs.")


def sample_actions(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One action per row of `probs` ([N, A]) from a run's own generator (torch.multinomial; cheaper than
    Categorical), on the generator's device: the CPU, where the envs need the actions (on a GPU one multinomial
    launch per run cost ~0.14 ms, more than the copy of the probabilities; results/benchmarks.md). The one place the
    learners sample actions (tests replace it to play fixed actions)."""
    return torch.multinomial(probs.to(generator.device), 1, generator=generator).squeeze(-1)


def sampler_seed(seed: int) -> int:
    """Seed of a run's action sampler: its own stream, so that a run samples the same actions alone or in a group."""
    return derive_seed(seed, 104_729)


class _Run:
    """One run inside a :class:`Learner`: its agent, hook, optimiser, action sampler, rollout buffers and output
    files. Everything it computes depends on its own (args, seed) and the observations of its own envs only."""

    def __init__(self, spec: RunSpec, env: VecEnv, device: torch.device, T: int, N: int, own_checkpoint: bool):
        self.args = args = spec.args
        self.out = out = Path(spec.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        agent = spec.agent
        if agent is None:
            seed_everything(args.seed)
            agent = make_net(args.net, env.obs_shape, env.n_actions)
        self.agent = agent = agent.to(device)
        self.hook = hook = spec.hook or Hook()
        self.params = params = [p for p in agent.parameters() if p.requires_grad] + list(hook.parameters())
        scales = {id(p): s for p, s in hook.lr_scales(agent)}
        groups = [{"params": [p for p in params if id(p) not in scales], "lr_scale": 1.0}]
        for s in sorted(set(scales.values())):  # one group per learning-rate multiplier a hook asks for
            groups.append({"params": [p for p in params if scales.get(id(p)) == s], "lr_scale": s,
                           "lr": args.lr * s})
        self.opt = make_optimizer(args, [g for g in groups if g["params"]])
        # on the CPU on every device: a run draws the same actions from the same probabilities on a CPU or a GPU
        self.sampler = torch.Generator().manual_seed(sampler_seed(args.seed))
        self.label = f"{args.game} seed {args.seed}"

        self.own_checkpoint = own_checkpoint
        self.ckpt_path = out / "checkpoint.pt"
        self.start_update, self.wall0 = 0, 0.0
        self.resumed_rng = None
        resume = spec.resume
        if own_checkpoint and self.ckpt_path.exists():
            resume = load_checkpoint(self.ckpt_path, device)
        if resume is not None:
            self._restore(resume)
        # the partial CSVs: a new run replaces old ones, a resumed run cuts them back to the rows its checkpoint
        # counted; the statistics' columns are those of the first row (a hook adds its own)
        self.curve = CsvLog(out / "curve.partial.csv", CURVE_FIELDS, None if resume is None else resume["curve_rows"])
        self.stats = CsvLog(out / "train_stats.partial.csv", None, None if resume is None else resume["stats_rows"])
        self.tb = None
        if args.tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(str(out / "tb"))

        self.obs_buf = torch.zeros((T, N, *env.obs_shape), dtype=torch.uint8)
        self.act_buf = torch.zeros((T, N), dtype=torch.long)
        self.rew_buf = torch.zeros((T, N))
        self.done_buf = torch.zeros((T, N), dtype=torch.bool)
        self.start_buf = torch.zeros((T, N), dtype=torch.bool)
        self.val_buf = torch.zeros((T, N))
        # log pi(a|s) of the acting policy, recorded only for a hook that replaces the rewards (Hook.rewards)
        self.shapes_rewards = type(hook).rewards is not Hook.rewards
        self.logp_buf = torch.zeros((T, N)) if self.shapes_rewards else None
        self.val_dev = torch.zeros((T, N), device=device)  # the rollout's values (and log pi) where they are computed
        self.logp_dev = torch.zeros((T, N), device=device) if self.shapes_rewards else None
        self.recent: list[float] = []
        self.obs = self.state = self.starts = self.state0 = self.last_value = None

    def _restore(self, ck: dict) -> None:
        self.agent.load_state_dict(ck["agent"])
        self.opt.load_state_dict(ck["optimizer"])
        self.hook.load_state_dict(ck["hook"])
        if "sampler" in ck:
            try:
                self.sampler.set_state(ck["sampler"].cpu())
            except RuntimeError:  # a GPU generator's state (checkpoints from before samplers moved to the CPU)
                print(f"[{self.label}] the checkpoint's action sampler is a GPU's: sampling restarts from "
                      "the run's seed (the resumed run is not bit-for-bit the uninterrupted one)",
                      file=sys.stderr, flush=True)
        self.resumed_rng = ck["rng"]
        self.start_update, self.wall0 = ck["update"], ck["wall_time"]

    def checkpoint_state(self, update: int, wall: float, rng: dict | None = None) -> dict:
        self.curve.flush()
        self.stats.flush()
        return {"agent": self.agent.state_dict(), "optimizer": self.opt.state_dict(),
                "hook": self.hook.state_dict(), "rng": rng_state() if rng is None else rng,
                "sampler": self.sampler.get_state(), "update": update, "wall_time": wall,
                "curve_rows": self.curve.rows, "stats_rows": self.stats.rows}

    def begin_segment(self, obs: torch.Tensor, device) -> None:
        self.obs = obs
        self.state = self.agent.initial_state(obs.shape[0], device)
        self.starts = torch.ones(obs.shape[0], dtype=torch.bool)

    # -- collect: one rollout step of this run (inference mode) -------------------------------------
    def act(self, t: int, device, out=None) -> torch.Tensor:
        """Record the observation at step t and sample this run's actions for it (on the CPU, from the run's own
        generator). `out`: the agent's output on this observation, where the caller computed it (for several runs
        at once)."""
        self.obs_buf[t] = self.obs
        self.start_buf[t] = self.starts
        if out is None:
            out = self.agent(self.obs.to(device), self.state, self.starts.to(device))
        self.state = out.state
        a = sample_actions(F.softmax(out.logits, -1), self.sampler)
        self.val_dev[t] = out.value  # copied to val_buf once per rollout
        if self.shapes_rewards:
            self.logp_dev[t] = F.log_softmax(out.logits, -1).gather(-1, a.to(device).unsqueeze(-1)).squeeze(-1)
        return a

    def observe(self, t: int, st: Step, sl: slice, episodes: list, step_now: int, frameskip: int, wall: float,
                device, value_fn) -> None:
        """Store what this run's envs (`sl` of the shared vector env) returned for step t; `value_fn(obs, state)`
        is this run's value function (for the cut states of frame-capped games)."""
        r = torch.from_numpy(st.reward[sl])
        if st.final_obs is not None:  # frame-cap truncation: bootstrap from the cut state
            idx = np.flatnonzero(st.truncated[sl])
            if len(idx):
                v_cut = value_fn(torch.from_numpy(st.final_obs[sl][idx]).to(device),
                                 None if self.state is None else tuple(s[idx] for s in self.state))
                r[idx] += self.args.gamma * v_cut.cpu()
        self.rew_buf[t] = r
        self.done_buf[t] = torch.from_numpy(st.terminal[sl] | st.truncated[sl])
        self.starts = torch.from_numpy(st.game_over[sl].copy())
        self.obs = torch.from_numpy(st.obs[sl])
        for ret, length in episodes:
            self.recent.append(ret)
            self.curve.write((step_now, step_now * frameskip, f"{wall:.2f}", ret, length))
            if self.tb:
                self.tb.add_scalar("episode/score", ret, step_now)
        self.recent = self.recent[-100:]

    # -- update: returns, loss, optimiser step, hook ------------------------------------------------
    def learn(self, update: int, n_updates: int, per_update: int, device) -> dict:
        """One A2C update on the collected rollout; returns the statistics row of this update."""
        args, agent, hook = self.args, self.agent, self.hook
        frac, step = update / n_updates, (update + 1) * per_update
        rewards = self.rew_buf
        if self.shapes_rewards:  # outside inference mode: a hook may keep a graph of its own (Distral's pi_0)
            rewards = hook.rewards(agent, Rollout(self.obs_buf, self.act_buf, self.rew_buf, self.start_buf,
                                                  self.state0, self.logp_buf, frac, step))
        adv, ret = gae(rewards, self.val_buf, self.done_buf, self.last_value, args.gamma, args.gae_lambda)
        batch = Batch(self.obs_buf.to(device), self.act_buf.to(device), adv.to(device), ret.to(device),
                      self.start_buf.to(device), self.state0, frac, step)
        out = agent.forward_sequence(batch.obs, batch.state0, batch.starts)
        logp_all = F.log_softmax(out.logits, -1)
        logp = logp_all.gather(-1, batch.actions.unsqueeze(-1)).squeeze(-1)
        entropy = -(logp_all.exp() * logp_all).sum(-1)
        reduce = torch.sum if args.loss_reduction == "sum" else torch.mean
        pg_loss = -reduce(logp * batch.advantages)
        v_loss = 0.5 * reduce((batch.returns - out.value) ** 2)
        loss = pg_loss + args.vf_coef * v_loss - args.ent_coef * reduce(entropy) if args.gae_loss else None
        extra_loss, logs = hook.loss(agent, batch, out)
        if extra_loss is not None:
            loss = extra_loss if loss is None else loss + extra_loss
        if loss is not None and not torch.isfinite(loss):
            self.nonfinite(loss, {"policy_loss": pg_loss, "value_loss": v_loss, "entropy": entropy,
                                  "hook loss": extra_loss}, update, per_update)
        grad_norm = 0.0
        if loss is not None:  # None: gae_loss off and no hook loss, the main optimiser has nothing to do
            grad_norm = optimizer_step(self.opt, loss, self.params, args.max_grad_norm)
        logs.update(hook.after_update(agent, batch))
        return {"env_steps": step, "policy_loss": pg_loss, "value_loss": v_loss, "entropy": entropy,
                "grad_norm": grad_norm, "logs": logs}

    def nonfinite(self, loss, terms: dict, update: int, per_update: int) -> None:
        """Stop on a non-finite loss: name the update, the non-finite terms and whether a checkpoint is there to
        resume from (both engines of common/multirun.py call it)."""
        bad = ", ".join(f"{k} = {float(torch.as_tensor(v).detach().float().mean())}" for k, v in terms.items()
                        if v is not None and not torch.isfinite(torch.as_tensor(v)).all())
        kept = (f"The last checkpoint ({self.ckpt_path}) is kept; a rerun resumes from it."
                if self.ckpt_path.exists() else
                f"No checkpoint was written yet ({self.ckpt_path}): a rerun starts from scratch.")
        raise FloatingPointError(
            f"non-finite loss ({loss.item()}; {bad or 'the total'}) at update {update} (step {update * per_update:,}) "
            f"of {self.label}: lower lr (now {self.args.lr}) or check the reward scale and hook losses. {kept}")

    # -- log: one row of train_stats.csv ------------------------------------------------------------
    def log(self, s: dict) -> None:
        row = {"env_steps": s["env_steps"], "policy_loss": s["policy_loss"].item(),
               "value_loss": s["value_loss"].item(), "entropy": s["entropy"].mean().item(),
               "grad_norm": float(s["grad_norm"]), "lr": s.get("lr", self.opt.param_groups[0]["lr"]), **s["logs"]}
        self.stats.write_dict(row)
        if self.tb:
            for k, v in row.items():
                if k != "env_steps":
                    self.tb.add_scalar(f"train/{k}", v, row["env_steps"])

    def close(self) -> None:
        self.curve.close()
        self.stats.close()
        if self.tb:
            self.tb.close()

    def finish(self, env: VecEnv) -> None:
        """model.pt, final.json, train_stats.csv and curve.csv (last: it marks a finished run)."""
        out, agent = self.out, self.agent
        # an agent with teacher modules (Knowledge Flow) exports its independent student here
        save_policy(out / "model.pt", agent.export_policy() if hasattr(agent, "export_policy") else agent,
                    self.args, env)
        final = self.hook.final(agent)
        if final:  # e.g. Knowledge Flow: how far p_w(student) is from 1 at the end
            write_json(out / "final.json", final)
        # the final CSVs are copies: the partial ones stay until the checkpoint is gone, so a job killed anywhere in
        # here (or whose outputs the pipeline deletes before a rerun) resumes from intact files
        for tmp, final in ((self.stats.path, out / "train_stats.csv"), (self.curve.path, out / "curve.csv")):
            with atomic_path(final) as part:  # curve.csv last: its presence marks a finished run
                shutil.copyfile(tmp, part)
        if self.own_checkpoint:
            self.ckpt_path.unlink(missing_ok=True)
            self.cleanup()

    def cleanup(self) -> None:
        """Remove the partial CSVs of a finished run (a driver with its own checkpoint calls it after removing it)."""
        for log in (self.curve, self.stats):
            log.path.unlink(missing_ok=True)


def load_checkpoint(path: Path, device) -> dict:
    """A learner checkpoint, checked whole first (common.io.read_checkpoint: a truncated or bit-flipped file stops
    with one error naming the file and the fix)."""
    return read_checkpoint(path, device)


class Learner:
    """The A2C learner in step-wise form for K >= 1 runs: :meth:`step` performs one update of every run,
    :meth:`finish` writes their outputs. ``Learner(args, out_dir, ...)`` is one run (K = 1);
    ``Learner.many([RunSpec, ...])`` trains K runs in one process through the same code.

    The K runs share one vector env of K x num_envs envs (run k owns envs k*num_envs ... (k+1)*num_envs - 1, seeded
    from its own seed) and one update schedule, so they must agree on :data:`SHARED_FIELDS`. Each keeps its own
    agent, optimiser, hook, action sampler (a ``torch.Generator`` seeded from its seed) and output files; its
    networks run on its own envs' observations only. On the CPU a run therefore computes the same numbers in a group
    as alone, bit for bit (tests/test_multirun.py). One step reads as: collect (every run acts, one env step for
    all) -> update (each run's A2C step) -> log.

    A driver that runs several learners side by side (cA3C's collaborative mode, papers/cdrl/collaborative.py)
    calls :meth:`step` of each in lock-step and keeps their checkpoints itself: ``own_checkpoint=False`` stops the
    learner from reading or writing <out>/checkpoint.pt, :meth:`checkpoint_state` gives what a checkpoint holds
    and ``resume=`` restores it. Checkpoint boundaries are unchanged: the learner still truncates its episodes and
    reseeds its envs there.

    The envs are reset lazily, at the start of the first :meth:`step`: constructing a learner draws nothing
    from the global RNG after its checkpoint was restored.
    """

    def __init__(self, args: A2CArgs, out_dir: str | os.PathLike, agent: nn.Module | None = None,
                 hook: Hook | None = None, env: VecEnv | None = None, own_checkpoint: bool = True,
                 resume: dict | None = None):
        self._build([RunSpec(args, out_dir, agent, hook, resume)], env, own_checkpoint)

    @classmethod
    def many(cls, specs: list[RunSpec], env: VecEnv | None = None, own_checkpoint: bool = True,
             batch: str = "loop") -> "Learner":
        """K runs in one process (see the class docstring); `env`, if given, must hold K x num_envs envs. `batch`:
        how the runs compute (common/multirun.py): 'loop' (each run's own agent; bit-for-bit what it computes
        alone), 'stacked' (all runs' nets in one batched call) or 'auto' (stacked where the runs allow it)."""
        self = cls.__new__(cls)
        self._build(list(specs), env, own_checkpoint, batch)
        return self

    def _build(self, specs: list[RunSpec], env: VecEnv | None, own_checkpoint: bool, batch: str = "loop") -> None:
        if not specs:
            raise ValueError("a Learner needs at least one run")
        args_list = [s.args for s in specs]
        check_group(args_list)
        outs = [str(Path(s.out_dir).resolve()) for s in specs]
        if len(set(outs)) < len(outs):
            raise ValueError(f"runs of one job need distinct run directories, got {outs}")
        a0 = args_list[0]
        self.K = K = len(specs)
        torch.set_num_threads(max(a.torch_threads for a in args_list))
        self.device = device = resolve_device(a0.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device '{a0.device}' asked for, but torch sees no GPU (torch.cuda.is_available() is "
                               f"False; torch {torch.__version__}): set device: auto or cpu, or install a CUDA build "
                               "of torch")
        if K == 1:
            seed_everything(a0.seed)
        self.T, self.N = T, N = a0.n_steps, a0.num_envs
        if env is None:
            env = make_vec_env(a0.game, K * N, a0.protocol, num_threads=max(a.env_threads for a in args_list))
        elif env.num_envs != K * N:
            raise ValueError(f"the vector env holds {env.num_envs} envs; {K} runs x num_envs {N} need {K * N}")
        self.env = env
        self.slices = [slice(k * N, (k + 1) * N) for k in range(K)]
        self.per_update = per_update = T * N
        self.n_updates = math.ceil(a0.total_steps / per_update)
        self.ckpt_updates = max(1, a0.checkpoint_every // per_update) if a0.checkpoint_every > 0 else 0
        self.boundaries = Boundaries(self.ckpt_updates)  # in updates
        self.frameskip = 1 if a0.game.startswith("MinAtar/") else AtariProtocol.from_dict(a0.protocol).frameskip
        self.own_checkpoint = own_checkpoint
        self.runs = []
        for s in specs:
            write_json(Path(s.out_dir) / "config.json", {"a2c": asdict(s.args), "n_updates": self.n_updates})
            self.runs.append(_Run(s, env, device, T, N, own_checkpoint))
        if K > 1:
            check_memory(self.runs, env.obs_shape, T, N, device)
        starts = {r.start_update for r in self.runs}
        if len(starts) > 1:
            raise ValueError("runs of one Learner must resume from the same update, got "
                             + ", ".join(f"{r.label}: {r.start_update}" for r in self.runs)
                             + "; train_many() groups them by their checkpoints")
        self.start_update = self.update = starts.pop()
        if K == 1 and self.runs[0].resumed_rng is not None:
            set_rng_state(self.runs[0].resumed_rng)  # a hook drawing from the global RNG continues as uninterrupted
        if self.start_update:
            print(f"[{self._label()}] resuming from checkpoint at step {self.start_update * per_update:,}",
                  file=sys.stderr, flush=True)
        self.wall0 = self.runs[0].wall0
        self.progress = Progress(K * self.n_updates * per_update, self._label(), a0.log_interval_s)
        self.t_start = time.time() - self.wall0
        self.stats_every_updates = max(1, a0.stats_every // per_update)
        self.started = False
        self.engine = make_engine(self.runs, device, batch)

    def _label(self) -> str:
        if self.K == 1:
            return self.runs[0].label
        return f"{self.runs[0].args.game} {self.K} runs (seeds {', '.join(str(r.args.seed) for r in self.runs)})"

    # -- the one-run view (K = 1), as drivers and tests use it -------------------------------------
    def _one(self) -> _Run:
        if self.K != 1:
            raise AttributeError("this Learner holds several runs: use learner.runs[k]")
        return self.runs[0]

    agent = property(lambda self: self._one().agent)
    hook = property(lambda self: self._one().hook)
    opt = property(lambda self: self._one().opt)
    args = property(lambda self: self._one().args)
    out = property(lambda self: self._one().out)
    ckpt_path = property(lambda self: self._one().ckpt_path)
    obs_buf = property(lambda self: self._one().obs_buf)
    act_buf = property(lambda self: self._one().act_buf)

    def checkpoint_state(self, rng: dict | None = None) -> dict:
        """What a checkpoint of the (one) run at the current update holds; `rng`: the global RNG state to record
        (default: the one now)."""
        return self._one().checkpoint_state(self.update, time.time() - self.t_start, rng)

    @property
    def at_boundary(self) -> bool:
        """Whether the next update starts a new checkpoint segment (never the update a run resumed at)."""
        return self.boundaries.at(self.update, self.start_update)

    @property
    def done(self) -> bool:
        return self.update >= self.n_updates

    @property
    def round(self) -> int:
        """Updates done (the driver protocol of run_rounds: one update a round)."""
        return self.update

    def step_round(self) -> None:
        self.step()

    def _begin_segment(self) -> None:
        """Reset every env, run k's from env_seed(its seed, segment index)."""
        segment = self.boundaries.segment(self.update)
        self.obs_all = obs = torch.from_numpy(self.env.reset([env_seed(r.args.seed, segment) for r in self.runs]))
        for r, sl in zip(self.runs, self.slices):
            r.begin_segment(obs[sl], self.device)

    # -- one update of every run ---------------------------------------------------------------------
    def step(self) -> None:
        """collect -> update -> log, for every run; at a boundary first the checkpoints (if own) and new segment.
        The phases are methods of their own so that a driver can interleave two learners' rollouts step by step
        (common.multirun.Overlapped: one learner's envs step while the other's nets run)."""
        self.begin_update()
        for t in range(self.T):
            self.act(t)
            self.observe(t)
        self.end_update()

    def begin_update(self) -> None:
        """Checkpoints and a new env segment at a boundary, the learning rate, the rollout's initial state."""
        if not self.started:
            self.started = True
            self._begin_segment()
            self.t_start = time.time() - self.wall0  # wall time counts training, not the first reset
        elif self.at_boundary:
            if self.own_checkpoint:
                self.save_checkpoints()
            self._begin_segment()
        self.engine.decay(self.update / self.n_updates)
        for r in self.runs:
            r.hook.begin_update(r.agent, self.update / self.n_updates)
            r.state0 = r.state if r.state is None else tuple(s.detach() for s in r.state)

    def act(self, t: int) -> None:
        """Collect, step t (1/2): every run acts on its envs; the actions go to the env (which may step meanwhile)."""
        with torch.inference_mode(), self._device_memory():
            acts = self.engine.act(t, self.obs_all)
            actions = (torch.cat(acts) if self.K > 1 else acts[0]).cpu()
            for r, sl in zip(self.runs, self.slices):
                r.act_buf[t] = actions[sl]
            self.env.send(actions.numpy())

    def observe(self, t: int) -> None:
        """Collect, step t (2/2): what the env returned, into every run's buffers and curve."""
        runs, N = self.runs, self.N
        with torch.inference_mode(), self._device_memory():
            st = self.env.recv()
            self.obs_all = torch.from_numpy(st.obs)
            episodes = [[] for _ in runs]
            for i, ret, length in st.episodes:
                episodes[i // N].append((ret, length))
            step_now = (self.update * self.T + t + 1) * N
            wall = time.time() - self.t_start
            for k, (r, sl, ep) in enumerate(zip(runs, self.slices, episodes)):
                r.observe(t, st, sl, ep, step_now, self.frameskip, wall, self.device, self.engine.value_fn(k))

    def end_update(self) -> None:
        """Update (every run's A2C step on its rollout) -> log."""
        with self._device_memory():
            with torch.inference_mode():
                self.engine.last_values(self.obs_all)
                self.engine.end_rollout()
            stats = self.engine.learn(self.update, self.n_updates, self.per_update)
        if (self.update + 1) % self.stats_every_updates == 0 or self.update == self.n_updates - 1:
            for r, s in zip(self.runs, stats):
                r.log(s)
        self.update += 1
        recent = self.runs[0].recent if self.K == 1 else [np.mean(r.recent[-10:]) for r in self.runs if r.recent]
        self.progress.update(self.K * self.update * self.per_update, recent)

    @contextlib.contextmanager
    def _device_memory(self):
        """An out-of-memory error of the device, re-raised with the fix."""
        try:
            yield
        except torch.OutOfMemoryError as e:
            raise MemoryError(f"out of {self.device} memory with {self.K} runs x {self.N} envs in one job ({e}); "
                              "train fewer runs per job (config: runs_per_job) or fewer envs") from e

    def save_checkpoints(self) -> None:
        """Every run's checkpoint.pt, each written atomically (a kill between two leaves runs one boundary apart:
        train_many() resumes them in groups)."""
        wall = time.time() - self.t_start
        self.engine.sync()
        for r in self.runs:
            torch_save(r.checkpoint_state(self.update, wall), r.ckpt_path)

    # -- the end ----------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the CSV (and TensorBoard) files; called before finish() and on any exit."""
        for r in self.runs:
            r.close()

    def cleanup(self) -> None:
        """Remove every run's partial CSVs: for drivers with their own checkpoint (own_checkpoint=False), after
        they removed it."""
        for r in self.runs:
            r.cleanup()

    def finish(self) -> dict | list[dict]:
        """Write every run's model.pt, final.json, train_stats.csv and curve.csv; one summary (K = 1) or a list."""
        self.progress.update(self.K * self.n_updates * self.per_update, [], force=True)
        self.engine.sync()
        for r in self.runs:
            r.finish(self.env)
        self.env.close()
        res = [{"updates": self.n_updates, "env_steps": self.n_updates * self.per_update,
                "wall_time": time.time() - self.t_start} for _ in self.runs]
        return res[0] if self.K == 1 else res


def train(args: A2CArgs, out_dir: str | os.PathLike, agent: nn.Module | None = None,
          hook: Hook | None = None, env: VecEnv | None = None, stop_after_updates: int | None = None) -> dict:
    """Train `agent` (default: a fresh `args.net`) with A2C; write curve.csv, model.pt, train_stats.csv.

    Resumes from <out>/checkpoint.pt if it exists. `stop_after_updates` stops early without writing
    final outputs (used by tests to simulate a killed job).
    """
    return _drive(Learner(args, out_dir, agent=agent, hook=hook, env=env), stop_after_updates)


def _drive(learner: Learner, stop_after_updates: int | None):
    """The learner's updates to the end (run_rounds, one update a round), then its outputs."""
    stopped = run_rounds(learner, stop_after_updates)
    return {"stopped_at_update": stopped["stopped_at_round"]} if stopped else learner.finish()


def checkpoint_update(out_dir) -> int | None:
    """The update a run would resume from (None: no checkpoint; -1: already finished)."""
    out = Path(out_dir)
    if (out / "curve.csv").exists():  # written last: the run finished
        return -1
    if not (out / "checkpoint.pt").exists():
        return None
    return int(load_checkpoint(out / "checkpoint.pt", "cpu")["update"])


def train_many(build, specs: list, stop_after_updates: int | None = None, batch: str = "loop",
               overlap: bool = False) -> list[dict]:
    """Train runs in one process: `specs` are (args, out_dir) pairs, `build(args, out_dir, env_info)` returns the
    RunSpec of one run (its agent and hook). Finished runs are skipped; runs that resume from different checkpoint
    updates (a job killed while writing them) train as separate groups, one after the other. Returns each group's
    result (a list per group; {'stopped_at_update': k} entries when `stop_after_updates` stops a group early).
    `overlap`: a group of two or more runs trains as two halves, each with its own vector env, one half's envs
    stepping while the other half's nets run (common.multirun.Overlapped; each half computes what it would as a job
    of its own)."""
    todo: dict[int, list] = {}
    for args, out in specs:
        u = checkpoint_update(out)
        if u == -1:
            print(f"[{args.game} seed {args.seed}] already finished ({out}/curve.csv): skipped", file=sys.stderr)
            continue
        todo.setdefault(u or 0, []).append((args, out))
    results = []
    for _, group in sorted(todo.items()):
        check_group([a for a, _ in group])
        learners = []
        for part in (Overlapped.halves(group) if overlap and len(group) > 1 else [group]):
            a0 = part[0][0]
            env = make_vec_env(a0.game, len(part) * a0.num_envs, a0.protocol,
                               num_threads=max(a.env_threads for a, _ in part))
            learners.append(Learner.many([build(a, o, env) for a, o in part], env=env, batch=batch))
        results.append(_drive(learners[0] if len(learners) == 1 else Overlapped(learners), stop_after_updates))
    return results


def main(argv=None):
    """python -m common.a2c --out DIR --args '{game: Pong, total_steps: 100000}' [--set seed=3 ...]"""
    import argparse

    from common.cli import add_run_options, run_mapping

    ap = argparse.ArgumentParser(description="Train one A2C run (the A3C baseline when no hook is given).")
    add_run_options(ap, "run directory (checkpoint, curve.csv, model.pt)", "A2CArgs fields as YAML/JSON")
    a = ap.parse_args(argv)
    train(A2CArgs.from_dict(run_mapping(a)), a.out)


if __name__ == "__main__":
    from common.cli import run

    run(main)
