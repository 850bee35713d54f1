"""How the runs of one multi-run job compute (common.a2c.Learner.many): one run after another, or all at once.

:class:`LoopEngine` calls each run's own agent on its own envs' observations: a run computes the same numbers in
a job of any size as alone, bit for bit on the CPU. It serves every agent and hook (Knowledge Flow students,
cA3C's LSTM, Distral). An agent class may define ``forward_many(agents, obs, states, starts) -> [NetOut]`` for the
rollout's forward of several runs at once (Knowledge Flow evaluates the frozen teachers its students share once
per step, on all runs' observations together); it must return what each agent's own forward would.

:class:`StackedEngine` holds the K runs' parameters stacked ([K, ...] per tensor, ``torch.func.stack_module_state``)
and evaluates all K networks in one batched call (``torch.vmap`` over ``torch.func.functional_call``): one
kernel per layer for all runs instead of K. One Adam/RMSprop over the stacked tensors is exactly K independent
optimisers (both are element-wise and the runs step in lock-step); the gradient-norm clip is computed per run. The
arithmetic is the loop's, but batched kernels round differently, so a run's bits depend on the job it trained in
(same job -> same bits; one update agrees with the loop's to ~1e-6: tests/test_multirun.py). It serves the runs
it can batch: the same feed-forward net (A3C, Nature, MinAtar), no hook, identical arguments but the seed.

Checkpoints and outputs are the loop's: before a checkpoint or the end, :meth:`StackedEngine.sync` copies every
run's slice of the parameters and optimiser state back into that run's own agent and optimiser, so each run
writes the checkpoint.pt and model.pt it would write in a loop, and either engine resumes it.
"""

from __future__ import annotations

import copy
from dataclasses import asdict

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state

from common.nets import LayeredNet


class LoopEngine:
    """Each run's own agent, one run after another (see the module docstring)."""

    name = "loop"

    def __init__(self, runs, device):
        self.runs, self.device = runs, device

    def decay(self, frac: float) -> None:
        from common.a2c import decay_lr

        for r in self.runs:
            decay_lr(r.opt, r.args, frac)

    def act(self, t: int, obs_all: torch.Tensor) -> list[torch.Tensor]:
        runs, dev = self.runs, self.device
        agents = [r.agent for r in runs]
        many = getattr(type(agents[0]), "forward_many", None)
        if len(runs) > 1 and many is not None and all(type(a) is type(agents[0]) for a in agents):
            # the agents' own batched forward (Knowledge Flow: frozen teachers the runs share run once for all)
            outs = many(agents, [r.obs.to(dev) for r in runs], [r.state for r in runs],
                        [r.starts.to(dev) for r in runs])
            return [r.act(t, dev, out=o) for r, o in zip(runs, outs)]
        return [r.act(t, dev) for r in runs]

    def value_fn(self, k: int):
        agent = self.runs[k].agent
        return lambda obs, state: agent(obs, state).value

    def last_values(self, obs_all: torch.Tensor) -> None:
        for r in self.runs:
            r.last_value = r.agent(r.obs.to(self.device), r.state, r.starts.to(self.device)).value.cpu()

    def end_rollout(self) -> None:
        """The rollout's values (and log pi) from where they were computed into each run's CPU buffers."""
        for r in self.runs:
            r.val_buf.copy_(r.val_dev)
            if r.shapes_rewards:
                r.logp_buf.copy_(r.logp_dev)

    def learn(self, update: int, n_updates: int, per_update: int) -> list[dict]:
        return [r.learn(update, n_updates, per_update, self.device) for r in self.runs]

    def sync(self) -> None:
        pass


def stackable(runs) -> str | None:
    """Why these runs cannot share a :class:`StackedEngine` (None: they can)."""
    from common.a2c import Hook

    if len(runs) < 2:
        return "one run"
    a0 = runs[0].agent
    if type(a0) not in _STACKABLE_NETS() or getattr(a0, "recurrent", False):
        return f"agent {type(a0).__name__} is not a plain feed-forward net"
    if any(type(r.agent) is not type(a0) for r in runs):
        return "the runs' agents differ in type"
    shapes = [tuple((n, p.shape) for n, p in r.agent.named_parameters()) for r in runs]
    if any(s != shapes[0] for s in shapes):
        return "the runs' nets differ in shape"
    if any(type(r.hook) is not Hook for r in runs):
        return "a run has a hook (Knowledge Flow, cA3C, Distral run one after another)"
    base = {k: v for k, v in asdict(runs[0].args).items() if k != "seed"}
    for r in runs[1:]:
        d = {k: v for k, v in asdict(r.args).items() if k != "seed"}
        if d != base:
            return "the runs' arguments differ beyond the seed: " + ", ".join(k for k in d if d[k] != base[k])
    if not runs[0].args.gae_loss:
        return "gae_loss is off (nothing to batch)"
    return None


def _STACKABLE_NETS():
    from common.nets import A3CNet, MinAtarNet, NatureNet

    return (A3CNet, NatureNet, MinAtarNet)


def _vmap_input(self, obs):
    """LayeredNet.input without the channels-last copy (a memory-format query is not supported under vmap)."""
    return obs.to(torch.float32).mul_(self.obs_scale)


class StackedEngine:
    """The K runs' parameters stacked, every forward batched over runs (see the module docstring)."""

    name = "stacked"

    def __init__(self, runs, device):
        from common.a2c import make_optimizer

        self.runs, self.device, self.K = runs, device, len(runs)
        self.args = runs[0].args
        agents = [r.agent for r in runs]
        self.names = [n for n, _ in agents[0].named_parameters()]
        params, buffers = stack_module_state(agents)
        self.params = {n: params[n].detach().clone().requires_grad_(True) for n in self.names}
        self.buffers = {n: b.detach().clone() for n, b in buffers.items()}
        base = copy.deepcopy(agents[0]).to("meta")
        base.input = _vmap_input.__get__(base, LayeredNet)
        self.base = base
        self.opt = make_optimizer(self.args, [self.params[n] for n in self.names])
        self._stack_optimizer_state()
        # the rollout where the nets run ([K, T, N, ...]: a run's T x N rows are contiguous for the update)
        T, N = runs[0].rew_buf.shape
        self.obs_dev = torch.zeros((self.K, T, N, *runs[0].obs_buf.shape[2:]), dtype=torch.uint8, device=device)
        self.act_dev = torch.zeros((self.K, T, N), dtype=torch.long, device=device)
        self.val_dev = torch.zeros((T, self.K, N), device=device)
        self.last_dev = None
        self.obs_pin = (torch.zeros(self.obs_dev[:, 0].shape, dtype=torch.uint8).pin_memory()
                        if device.type == "cuda" else None)

        def fwd(p, b, obs):
            out = functional_call(base, (p, b), (obs,))
            return out.logits, out.value

        self.fwd = torch.vmap(fwd)

    # -- the runs' own optimisers <-> the stacked one ------------------------------------------------
    def _stack_optimizer_state(self) -> None:
        """Per-run optimiser states (restored from checkpoints) -> the stacked optimiser's."""
        per_run = [[r.opt.state.get(p) for p in r.agent.parameters()] for r in self.runs]
        if all(s is None for run in per_run for s in run):
            return
        for i, n in enumerate(self.names):
            states = [run[i] for run in per_run]
            p = self.params[n]
            self.opt.state[p] = {key: (torch.stack([s[key] for s in states]) if torch.is_tensor(v) and v.dim() > 0
                                       else v.clone() if torch.is_tensor(v) else v)
                                 for key, v in states[0].items()}

    def sync(self) -> None:
        """Copy every run's slice of the stacked parameters and optimiser state into its own agent and optimiser."""
        with torch.no_grad():
            for k, r in enumerate(self.runs):
                for n, p in r.agent.named_parameters():
                    p.copy_(self.params[n][k])
                    st = self.opt.state.get(self.params[n])
                    if st:
                        r.opt.state[p] = {key: (v[k].clone() if torch.is_tensor(v) and v.dim() > 0
                                                else v.clone() if torch.is_tensor(v) else v)
                                          for key, v in st.items()}
                for g in r.opt.param_groups:
                    g["lr"] = self.opt.param_groups[0]["lr"] * g.get("lr_scale", 1.0)

    # -- the learner's steps ------------------------------------------------------------------------
    def decay(self, frac: float) -> None:
        from common.a2c import decay_lr

        decay_lr(self.opt, self.args, frac)

    def _run_params(self, k: int):
        return ({n: v[k] for n, v in self.params.items()}, {n: v[k] for n, v in self.buffers.items()})

    def act(self, t: int, obs_all: torch.Tensor) -> list[torch.Tensor]:
        """One forward of all K nets on the K x N observations (`obs_all`, the shared env's, CPU); the rollout's
        observations, values and actions stay where they are computed (one copy of each per step, none per run)."""
        from common.a2c import sample_actions

        obs = obs_all.reshape(self.obs_dev[:, t].shape)
        if self.obs_pin is not None:  # through pinned memory: an asynchronous copy, ~2x a pageable one's rate
            self.obs_pin.copy_(obs)  # safe to reuse: the last step's copy finished before its actions came back
            obs = self.obs_pin
        self.obs_dev[:, t].copy_(obs, non_blocking=True)
        logits, values = self.fwd(self.params, self.buffers, self.obs_dev[:, t])
        probs = F.softmax(logits, -1).cpu()  # the step's one device sync: every run samples on the CPU
        acts = [sample_actions(probs[k], r.sampler) for k, r in enumerate(self.runs)]
        self.val_dev[t] = values
        self.act_dev[:, t] = torch.stack(acts).to(self.device)
        return acts

    def value_fn(self, k: int):
        def value(obs, state):
            return functional_call(self.base, self._run_params(k), (obs,)).value
        return value

    def last_values(self, obs_all: torch.Tensor) -> None:
        obs = obs_all.reshape(self.obs_dev[:, 0].shape).to(self.device)
        _, self.last_dev = self.fwd(self.params, self.buffers, obs)

    def end_rollout(self) -> None:
        pass  # the update reads the rollout's values where they are

    def learn(self, update: int, n_updates: int, per_update: int) -> list[dict]:
        from common.a2c import gae

        runs, K, args, dev = self.runs, self.K, self.args, self.device
        T, N = runs[0].rew_buf.shape
        step = (update + 1) * per_update
        cat = lambda name: torch.cat([getattr(r, name) for r in runs], 1).to(dev)  # noqa: E731 - [T, K*N]
        adv, ret = gae(cat("rew_buf"), self.val_dev.reshape(T, K * N), cat("done_buf"), self.last_dev.reshape(K * N),
                       args.gamma, args.gae_lambda)
        per_run = lambda x: x.reshape(T, K, N).transpose(0, 1).reshape(K, T * N)  # noqa: E731
        adv, ret = per_run(adv), per_run(ret)
        obs = self.obs_dev.reshape(K, T * N, *self.obs_dev.shape[3:])
        actions = self.act_dev.reshape(K, T * N)
        logits, values = self.fwd(self.params, self.buffers, obs)
        logp_all = F.log_softmax(logits, -1)
        logp = logp_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        entropy = -(logp_all.exp() * logp_all).sum(-1)  # [K, T*N]
        reduce = (lambda x: x.sum(1)) if args.loss_reduction == "sum" else (lambda x: x.mean(1))
        pg_loss = -reduce(logp * adv)
        v_loss = 0.5 * reduce((ret - values) ** 2)
        loss = pg_loss + args.vf_coef * v_loss - args.ent_coef * reduce(entropy)  # [K]
        if not torch.isfinite(loss).all():  # one device sync per update for all runs; then name the first bad run
            k = next(k for k in range(K) if not torch.isfinite(loss[k]))
            runs[k].nonfinite(loss[k], {"policy_loss": pg_loss[k], "value_loss": v_loss[k], "entropy": entropy[k]},
                              update, per_update)
        self.opt.zero_grad(set_to_none=True)
        loss.sum().backward()  # the runs are independent: each run's slice gets its own gradient
        grad_norm = self._clip_per_run(args.max_grad_norm)
        self.opt.step()
        lr = self.opt.param_groups[0]["lr"]
        out = []
        for k in range(K):
            out.append({"env_steps": step, "policy_loss": pg_loss[k], "value_loss": v_loss[k],
                        "entropy": entropy[k], "grad_norm": grad_norm[k], "logs": {}, "lr": lr})
        return out

    def _clip_per_run(self, max_norm: float) -> torch.Tensor:
        """clip_grad_norm_ of every run's own gradient (its slice of each stacked tensor); the norms before."""
        grads = [self.params[n].grad for n in self.names if self.params[n].grad is not None]
        norms = torch.stack([g.reshape(self.K, -1).pow(2).sum(1) for g in grads]).sum(0).sqrt()
        if max_norm > 0:
            coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
            for g in grads:
                g.mul_(coef.view(self.K, *([1] * (g.dim() - 1))))
            return norms
        return torch.zeros(self.K)


def make_engine(runs, device, batch: str = "auto"):
    """The engine for these runs: `batch` 'loop' | 'stacked' (an error if the runs cannot be stacked) | 'auto'
    (stacked where the runs can be stacked)."""
    if batch not in ("auto", "loop", "stacked"):
        raise ValueError(f"batch must be auto, loop or stacked, got '{batch}'")
    if batch == "loop":
        return LoopEngine(runs, device)
    why = stackable(runs)
    if why is None:
        return StackedEngine(runs, device)
    if batch == "stacked":
        raise ValueError(f"these runs cannot be stacked ({why}): use batch 'loop' or 'auto'")
    return LoopEngine(runs, device)



class Overlapped:
    """Two learners of one job (each a half of its runs, with a vector env of its own) stepped so that one half's
    envs step while the other half's nets run: per rollout step, A acts (while B's envs step), B takes what its envs
    returned and acts (while A's envs step), A takes what its envs returned. Only ale-py's envs step in threads of
    their own (common.envs.VecEnv.send); MinAtar's step in `recv`, so they gain nothing. Each half computes exactly
    what it computes as a job of its own (same bits on the CPU; tests/test_multirun.py); the updates do not overlap.
    The driver protocol of common.a2c.run_rounds (``step_round``, ``round``, ``done``, ``close``; ``finish``) and a
    Learner's ``step`` / ``per_update``."""

    def __init__(self, learners):
        from common.a2c import check_lockstep

        if len(learners) != 2:
            raise ValueError(f"Overlapped steps two learners, got {len(learners)}")
        check_lockstep({f"half {i}": lr for i, lr in enumerate(learners)}, "overlapped")
        if len({lr.update for lr in learners}) > 1:
            raise ValueError("the two halves of an overlapped job must resume from the same update, got "
                             f"{[lr.update for lr in learners]}")
        self.learners = learners

    round = property(lambda self: self.learners[0].update)
    done = property(lambda self: self.learners[0].done)
    per_update = property(lambda self: self.learners[0].per_update)

    @staticmethod
    def halves(items: list) -> list[list]:
        """How a job's runs split into the two halves (the first takes the odd one)."""
        k = (len(items) + 1) // 2
        return [items[:k], items[k:]]

    def step_round(self) -> None:
        self.step()

    def step(self) -> None:
        """One update of both halves, their rollouts interleaved (see the class docstring)."""
        a, b = self.learners
        a.begin_update()
        b.begin_update()
        for t in range(a.T):
            a.act(t)            # A's nets run while B's envs step (t > 0)
            if t:
                b.observe(t - 1)
            b.act(t)            # B's nets run while A's envs step
            a.observe(t)
        b.observe(a.T - 1)
        a.end_update()
        b.end_update()

    def close(self) -> None:
        for lr in self.learners:
            lr.close()

    def finish(self) -> list[dict]:
        out = []
        for lr in self.learners:
            res = lr.finish()
            out.extend(res if isinstance(res, list) else [res])
        return out


# -- before training: will K runs fit? ------------------------------------------------------------------------------
def run_memory_bytes(agent, obs_shape, T: int, N: int) -> int:
    """A conservative estimate of one run's memory: its weights (trainable ones x 4: weight, gradient, two optimiser
    moments), its rollout buffers, and the update's activations (every leaf module's output for T x N observations,
    x 3: kept for backward, their gradients and slack), measured by one probe forward on a blank observation."""
    trainable = sum(p.numel() for p in agent.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in agent.parameters() if not p.requires_grad)
    sizes = []
    hooks = [m.register_forward_hook(lambda m, i, o: sizes.append(o.numel() if torch.is_tensor(o) else 0))
             for m in agent.modules() if not list(m.children())]
    dev = next(agent.parameters()).device
    try:
        with torch.no_grad():
            agent(torch.zeros((1, *obs_shape), dtype=torch.uint8, device=dev),
                  agent.initial_state(1, dev), torch.ones(1, dtype=torch.bool, device=dev))
    finally:
        for h in hooks:
            h.remove()
        if hasattr(agent, "_rollout_z"):  # a Knowledge Flow student caches what it saw: not a rollout step
            agent._rollout_z.clear()
    obs_bytes = T * N * int(torch.tensor(obs_shape).prod())
    return 4 * (4 * trainable + frozen) + 3 * obs_bytes + 3 * 4 * T * N * sum(sizes)


def available_bytes(device) -> int:
    """Free memory where the runs will live: the GPU's (torch.cuda.mem_get_info) or the machine's (psutil)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    import psutil

    return int(psutil.virtual_memory().available)


def check_memory(runs, obs_shape, T: int, N: int, device) -> None:
    """A MemoryError naming the fix when K runs will not fit in the device's free memory (estimate: 80% of it)."""
    per_run = [run_memory_bytes(r.agent, obs_shape, T, N) for r in runs]
    need, free = sum(per_run), available_bytes(device)
    if need > 0.8 * free:
        gib = 2 ** 30
        raise MemoryError(f"{len(runs)} runs of {runs[0].args.game} need about {need / gib:.1f} GiB of {device} memory "
                          f"({max(per_run) / gib:.2f} GiB per run: weights, optimiser state, rollout buffers and the "
                          f"update's activations) and {free / gib:.1f} GiB are free: train fewer runs per job "
                          "(config runs_per_job) or fewer envs per run (num_envs)")
