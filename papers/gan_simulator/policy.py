"""Simulator-free GAS policy distillation (experiment ``policy``): a zoo teacher (common.zoo.load_teacher) labels
generated observations (the teacher's stacked-frame shape); a student policy (a common.nets net) is distilled
from generated observations only, then plays the game (common.evaluation) next to the teacher, a uniformly random
policy and distillation on real teacher rollouts (kd_real: the simulator-based upper bound). Arguments:
:class:`PolicyArgs`; the run: :func:`run_policy_experiment` (results files: harness.write_results).

Choices (documented in README.md, "Experiments"): the generator works at the next multiple of 4 of the frame side
(MinAtar 10 -> 12, centre-cropped to 10; Atari 84) and its output g is mapped to the env's frame scale by
``high * sigmoid(g)`` (high = 255 for Atari frames, 1 for MinAtar's 0/1 planes), the same map for generated,
buffer and noise inputs. The teacher's logits are SB3's normalised log-probabilities (DQN teachers: Q-values); its
features for the activation prior are the body's output (the input of the policy head).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn as nn

from common.checks import arg
from common.envs import dataclass_from_dict
from common.io import seed_everything
from common.nets import check_net_for_game
from papers.gan_simulator.guard import RealDataGuard
from papers.gan_simulator.harness import method_args, progress_log, run_method, summarise, write_results
from papers.gan_simulator.method import METHODS


@dataclass
class PolicyArgs:
    """Policy distillation from a zoo teacher; results are a pure function of these (and the teacher)."""

    game: str = "MinAtar/Breakout"
    """the teacher's game (Atari name or MinAtar/<Game>)"""
    teacher: str = ""
    """the zoo teacher's directory (common.zoo layout: model.zip, config.json)"""
    student_net: str = arg("auto", choices=("auto", "a3c", "nature", "minatar"))
    """common.nets net of the student: auto (minatar for MinAtar games, a3c for Atari) | a3c | nature | minatar"""
    methods: list = field(default_factory=lambda: ["dafl", "dfad", "ours", "kd_noise", "kd_real"])
    """distillation methods; kd_real = distillation on real teacher rollouts (the simulator-based upper bound)"""
    seeds: int = arg(1, ">= 1")
    """student runs per method"""
    gas: dict = field(default_factory=dict)
    """GASArgs fields for every method (image_size and channels are set from the teacher)"""
    method_overrides: dict = field(default_factory=dict)
    """method -> GASArgs fields for that method only"""
    rollout_steps: int = arg(5000, ">= 10")
    """observations collected from the teacher playing the game: 80% train kd_real, 20% measure agreement"""
    rollout_envs: int = arg(8, ">= 1")
    """games played in parallel for the rollouts"""
    eval: dict = field(default_factory=dict)
    """common.evaluation.EvalProtocol fields (frame_stack and size are taken from the teacher)"""
    threads: int = arg(1, ">= 1")
    """torch CPU threads"""
    device: str = "cpu"
    """cpu | cuda | auto"""

    @classmethod
    def from_dict(cls, d: dict) -> "PolicyArgs":
        from common.evaluation import EvalProtocol

        a = dataclass_from_dict(cls, dict(d), where="gan_simulator policy arguments")
        if not a.teacher:
            raise ValueError("policy distillation needs 'teacher': a zoo teacher directory, e.g. "
                             "teachers/smoke/ppo/MinAtar-Breakout/expert/seed0")
        bad = [m for m in list(a.methods) + list(a.method_overrides) if m not in METHODS]
        if bad:
            raise ValueError(f"unknown method(s) {bad}; choose from {', '.join(METHODS)}")
        if a.student_net != "auto":
            check_net_for_game(a.student_net, a.game, where="gan_simulator policy arguments", field="student_net")
        EvalProtocol.from_dict(a.eval)
        for m in a.methods:
            method_args(m, 0, a.gas, a.method_overrides)
        return a


def frame_map(obs_shape, high: float):
    """(generator side, channels, input_map): the generator works at the next multiple of 4 of the frame side;
    input_map centre-crops to the frame and maps g to the frame scale with high * sigmoid(g)."""
    c, h, w = obs_shape
    side = int(math.ceil(max(h, w) / 4) * 4)
    top, left = (side - h) // 2, (side - w) // 2

    def input_map(g: torch.Tensor) -> torch.Tensor:
        return high * torch.sigmoid(g[..., top:top + h, left:left + w])

    return side, c, input_map


class TeacherForDistill(nn.Module):
    """A zoo Teacher as distill() sees it: x (frame scale) -> (logits, features of the body)."""

    def __init__(self, teacher):
        super().__init__()
        self.teacher = teacher

    def forward(self, x):
        t = self.teacher
        feat = t.body(t._input(x))
        if t.is_dqn:
            return t.policy.q_net.q_net(feat), feat
        z = t.policy.action_net(t.policy.mlp_extractor.forward_actor(feat))
        return z - z.logsumexp(-1, keepdim=True), feat


class StudentLogits(nn.Module):
    """A common.nets student as distill() sees it: x -> logits (a copy of x: the nets scale their input in place)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x.clone()).logits


class Agent(nn.Module):
    """A policy for common.evaluation: obs -> NetOut(logits) from `fn` (teacher, random)."""

    def __init__(self, fn, n_actions: int):
        super().__init__()
        self.fn, self.n_actions = fn, n_actions

    def forward(self, obs, state=None, starts=None):
        from common.nets import NetOut

        return NetOut(self.fn(obs), None)

    def initial_state(self, n, device=None):
        return None


@torch.no_grad()
def teacher_rollouts(teacher, game: str, protocol: dict, steps: int, n_envs: int, seed: int) -> torch.Tensor:
    """`steps` observations (uint8, the teacher's frames) of the teacher playing (actions sampled from its
    policy; DQN: greedy) on its own training protocol."""
    from common.envs import make_vec_env

    env = make_vec_env(game, n_envs, protocol)
    gen = torch.Generator().manual_seed(seed)
    obs = env.reset(seed)
    out = []
    try:
        while sum(len(o) for o in out) < steps:
            out.append(torch.from_numpy(obs.copy()))
            logits = teacher.logits(obs)
            a = logits.argmax(-1) if teacher.is_dqn else torch.multinomial(logits.exp(), 1, generator=gen).squeeze(-1)
            obs = env.step(a.cpu().numpy()).obs
    finally:
        env.close()
    return torch.cat(out)[:steps]


@torch.no_grad()
def agreement(teacher_fn, student: nn.Module, obs: torch.Tensor, batch: int = 256) -> float:
    """% of real states on which the student's most likely action is the teacher's."""
    same = 0
    for i in range(0, len(obs), batch):
        x = obs[i:i + batch]
        same += int((teacher_fn(x).argmax(-1).cpu() == student(x).logits.argmax(-1).cpu()).sum())
    return 100.0 * same / max(1, len(obs))


def run_policy_experiment(args: PolicyArgs, out_dir, log=print) -> dict:
    """Teacher and random scores, then every method over the seeds: the student's game score and its action
    agreement with the teacher on held-out real states."""
    from common.evaluation import EvalProtocol, evaluate
    from common.nets import make_net
    from common.zoo import EVAL_SEED_OFFSET, is_minatar, load_teacher

    torch.set_num_threads(args.threads)
    teacher = load_teacher(args.teacher, device="cpu")
    if teacher.meta.get("game") and teacher.meta["game"] != args.game:
        raise ValueError(f"teacher {args.teacher} plays {teacher.meta['game']}, not {args.game}")
    high = float(teacher.sb3_model.observation_space.high.max())
    side, channels, input_map = frame_map(teacher.obs_shape, high)
    protocol = dict(teacher.meta.get("protocol") or {})
    ev = {**args.eval}
    for k in ("frame_stack", "size"):
        if k in protocol:
            ev[k] = protocol[k]
    proto = EvalProtocol.from_dict(ev)
    net_name = args.student_net if args.student_net != "auto" else ("minatar" if is_minatar(args.game) else "a3c")
    tfn = lambda obs: teacher.logits(obs)  # noqa: E731

    teacher_eval = evaluate(Agent(tfn, teacher.n_actions), args.game, proto, EVAL_SEED_OFFSET)
    rand_eval = evaluate(Agent(lambda obs: torch.zeros(len(obs), teacher.n_actions), teacher.n_actions), args.game,
                         EvalProtocol.from_dict({**ev, "policy": "sample"}), EVAL_SEED_OFFSET)
    log(f"teacher: {teacher_eval['mean']:.2f} over {teacher_eval['episodes']} games; random: {rand_eval['mean']:.2f}")
    real = teacher_rollouts(teacher, args.game, protocol, args.rollout_steps, args.rollout_envs, seed=0)
    n_train = int(round(0.8 * len(real)))
    real_train, real_held = real[:n_train], real[n_train:]
    guard = RealDataGuard(torch.utils.data.TensorDataset(real_train))   # locked while a data-free method runs

    rows, curves = [], []
    for r, kind in ((teacher_eval, "teacher"), (rand_eval, "random")):
        rows.append({"method": kind, "seed": 0, "score": r["mean"], "score_std": r["std"], "episodes": r["episodes"],
                     "agreement": 100.0 if kind == "teacher" else np.nan})
    dist_teacher = TeacherForDistill(teacher)
    for method in args.methods:
        for seed in range(args.seeds):
            gas = method_args(method, seed, args.gas, args.method_overrides, channels=channels, image_size=side,
                              device=args.device)
            seed_everything(gas.seed)
            net = make_net(net_name, teacher.obs_shape, teacher.n_actions)
            t0 = time.perf_counter()
            res = run_method(method, dist_teacher, StudentLogits(net), gas, guard, gas.batch_size,
                             input_map=input_map,
                             log=progress_log(f"{args.game} {method} seed {seed}", gas.student_steps))
            net.cpu().eval()   # distill trained it on args.device; the evaluation and agreement below run on the CPU
            score = evaluate(net, args.game, proto, EVAL_SEED_OFFSET + 1 + seed)
            agree = agreement(tfn, net, real_held)
            rows.append({"method": method, "seed": seed, "score": score["mean"], "score_std": score["std"],
                         "episodes": score["episodes"], "agreement": agree, "student_steps": gas.student_steps,
                         "generator_steps": res.generator_steps, "lives": res.lives,
                         "sources": "+".join(sorted(res.sources_seen())), "wall_s": time.perf_counter() - t0})
            curves += [{"method": method, "seed": seed, "student_step": h["student_step"],
                        "generator_step": h["generator_step"], "loss_student": h.get("loss_student"),
                        "loss_generator": h.get("loss_generator")} for h in res.history]
            log(f"{method} seed {seed}: score {score['mean']:.2f} over {score['episodes']} games, agreement "
                f"{agree:.1f}% ({rows[-1]['wall_s']:.1f}s, sources {rows[-1]['sources']})")
    result = {"experiment": "policy", "kind": "policy", "game": args.game, "args": asdict(args),
              "student_net": net_name, "generator_side": side, "frame_high": high, "eval_protocol": asdict(proto),
              "teacher": {"path": args.teacher, "algo": teacher.meta.get("algo"), "score": teacher_eval["mean"],
                          "zoo_eval": teacher.meta.get("eval")},
              "random": {"score": rand_eval["mean"]}, "n_rollout_train": len(real_train),
              "n_rollout_heldout": len(real_held), "summary": {**summarise(rows, "score")},
              "agreement": {m: s for m, s in summarise([r for r in rows if r["method"] not in ("teacher", "random")],
                                                        "agreement").items()},
              "rows": rows}
    write_results(result, curves, out_dir)
    return result
