"""Multi-task policy distillation with hierarchical prioritized replay (Yin & Pan, AAAI 2017), top to bottom.

One learner serves the paper's architecture study (proposed / DIST / AMN) and its sampling study
(H-PR / PR / Uniform), chosen by :class:`HPRArgs`:

1. **Teachers**: one frozen single-task DQN per game (``common.zoo.load_teacher``), giving Q_T(s, .).
2. **Student** (:class:`MultiTaskStudent`), one code path for three architectures::

       proposed  per-task conv stack (its teacher's Nature convs, 3136 features) -> shared FC 1028 -> 512 -> n_out
       dist      shared convs -> per-task FC 512 -> per-task output layer                  (Rusu et al. 2016)
       amn       shared convs -> shared FC 512 -> shared output layer                       (Parisotto et al. 2016)

   n_out is the full action set (18 for Atari, 6 for MinAtar). A game uses the subset of outputs that are
   its actions (``game_action_ids``); the others are discarded (masked) for that game, in acting, in the
   loss and in Eq. 5, so shared actions (FIRE, LEFT, ...) go through the same output in every game.
3. **Acting**: every step the student plays one step of *every* game ε-greedily (ε 1 -> 0.1 linearly over
   ``eps_decay_steps``, paper 1M), and each game's step adds one experience (frame, Q_T(s, .)) to that
   game's replay memory (``common.replay.ReplayMemory``: Uniform, rank-based PR, or H-PR).
4. **Learning**: every ``update_every`` (4) steps, one RMSProp minibatch update per game, on the
   importance-weighted distillation loss (Eq. 4)::

       L = mean_k  w_k * KL( softmax(q_T,k / tau) || softmax(q_S,k) )   over the game's actions

   then the sampled experiences get the priority of Eq. 5,
   |delta| = (1/|A_T|) * || softmax(q_T / tau) - softmax(q_S) ||_1  (``common.replay.td_error_eq5``).
5. **H-PR partitions**: edges split [V_min, V_max] of V(s) = max_a Q_T(s, a) evenly into p parts; the
   range is measured from a short teacher play before training (:func:`measure_value_range`).
6. **Evaluation**: every ``eval_every`` updates (per game; paper 25,000), each game is played for a fixed
   number of control steps (paper 100,000) at ε = 0.05 with up to 30 no-op starts; the score is the mean raw
   game score over the completed games (``common.evaluation``, step-budget mode; NaN if none completed).
   One ``curve.csv`` row per game and evaluation: game, env_steps (per game), frames, updates (per game),
   wall_time, eval_score, eval_episodes, train_kl (mean Eq. 4 loss since the last evaluation). Progress
   lines on stderr pool the last 10 training games of every game; the evaluation lines list each game.

Choices where the paper is silent (docs/reference_notes.md §2; each is a field of :class:`HPRArgs`):

* **Task convs of 'proposed'**: initialised from the teacher and *frozen* by default
  (``task_convs: teacher_frozen``). The paper says the student uses "the convolutional layers from teacher
  networks ... to generate task-specific input features" and that "the multi-task fully-connected layers
  are trained from scratch"; the trained part it names is the FC part, and its speed argument (reusing
  "existing knowledge from the convolutional filters") fits fixed features. It also says the approach
  "involves end-to-end training", so ``teacher_finetune`` (teacher init, trained with the FC layers) is
  the other reading, and ``random`` trains the task convs from scratch. Frozen convs also halve the CPU
  cost of an update (no conv backward pass). DIST and AMN share their convs, which no single teacher can
  provide: they start from random weights, as in Rusu et al. and Parisotto et al.
* **DIST / AMN sizes**: Nature conv stack (MinAtar: its 16x3x3 conv), FC 512 (the Nature DQN width the
  baselines' papers build on) unless ``fc_sizes`` says otherwise. For shared convs on MinAtar, whose
  games have different channel counts, inputs are zero-padded to the largest count.
* **Action sets**: the training envs use each game's minimal action set (the teacher's, and what the
  teacher zoo trains on); its actions are mapped to the student's full-set outputs by their ALE / MinAtar
  action ids. With ``protocol.full_action_space: true`` every output is a legal action of every game.
  Exploration draws uniformly from the game's legal actions.
* **tau** = 0.01 (Rusu et al. 2016); the student's softmax has temperature 1, as Eq. 4 writes.
* **Teacher Q-values are computed when the experience is added** and stored with it (float32 per action,
  72 B next to the 7,056 B frame): H-PR needs V(s) at insertion time to choose the partition anyway, and
  the paper writes the memory as D = {e_k, q_k}. The frame itself is stored once, as uint8.
* **One optimiser step per game** and update round, in game order (the paper: "one mini-batch update by
  sampling experience from each teacher's replay memory"; its evaluation counts "mini-batch updates on
  each game domain"). ``updates`` in curve.csv counts update rounds, i.e. updates per game.
* **Priorities** (Eq. 5) use the student outputs of the forward pass of the update (before the step), as
  Schaul et al. do with TD errors; the loss is weighted by the normalised importance weights (Eq. 8).
* **Optimiser**: RMSProp, lr 1e-4, alpha 0.99, eps 1e-5, no gradient clipping; minibatch 32; learning starts
  after 50,000 steps per game (the Nature DQN's replay start); none of these is given in the paper.
* **Replay**: the paper's sizes (Uniform 500k, H-PR 5 x 200k) and Schaul's rank-based alpha 0.7 and beta
  0.5 -> 1 (annealed over ``total_steps``) are ``common.replay.ReplayConfig``'s defaults; the frame stack
  it rebuilds is the protocol's (MinAtar: 1, a frame carries all channels).
* **V range**: the teacher plays ``vrange_steps`` (10,000) steps ε-greedily with ε 0.05 (its evaluation
  policy) before training; values outside [V_min, V_max] later clamp to the end partitions. A teacher whose
  values do not vary (V_max = V_min) gets a range of width 1e-6 (one effective partition).
* **Evaluation**: one env per game (the paper's single agent playing 100,000 steps), greedy over the
  game's actions, ε 0.05 uniform over them; a final evaluation is added at the end of training when the
  last update round is not a multiple of ``eval_every``.

Checkpoints and exact resume
----------------------------
As in ``common.a2c``: every ``checkpoint_every`` steps the learner saves student, optimiser, every replay
memory (``checkpoint_replay``; off for paper-size memories, then a resumed run refills its memories for
``learning_starts`` steps before learning again, an *approximate* resume), V ranges, RNG states, counters
and the curve, then ends all running games and reseeds the envs from (seed, boundary). A run killed after
a boundary and rerun continues bit-for-bit as the uninterrupted run (tests/test_hpr_distillation.py).

CLI::

    python -m papers.hpr_distillation.method --out runs/hpr/x --args '{games: [MinAtar/Breakout,
        MinAtar/SpaceInvaders], teachers: [teachers/dqn/MinAtar-Breakout/expert/seed0, ...]}' [--set seed=1]
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from common.checks import arg, check_finite, fail
from common.envs import MINATAR_PREFIX, AtariProtocol, ale_game_id, dataclass_from_dict, frame_hw, make_vec_env
from common.evaluation import EvalProtocol, evaluate
from common.io import (derive_seed, read_checkpoint, resolve_device, rng_state, seed_everything, set_rng_state,
                       torch_save, write_json)
from common.losses import softened_kl
from common.nets import NetOut, conv_misfit, init_layer
from common.replay import ReplayConfig, ReplayMemory, td_error_eq5
from common.runlog import Boundaries, CsvLog, Progress
from common.zoo import load_teacher, teacher_dir

ARCHS = ("proposed", "dist", "amn")
TASK_CONVS = ("teacher_frozen", "teacher_finetune", "random")
N_OUT = {"atari": 18, "minatar": 6}  # the full action sets
CONV_SPECS = {"atari": [(32, 8, 4), (64, 4, 2), (64, 3, 1)], "minatar": [(16, 3, 1)]}  # (channels, kernel, stride)
DEFAULT_FC = {"proposed": [1028, 512], "dist": [512], "amn": [512]}
EVAL_DEFAULTS = {"steps": 100_000, "epsilon": 0.05, "policy": "greedy", "num_envs": 1}
CURVE_FIELDS = ("game", "env_steps", "frames", "updates", "wall_time", "eval_score", "eval_episodes", "train_kl")
RESUME_FREE = ("log_interval_s", "torch_threads", "device")  # args that may change between kill and resume


@dataclass
class HPRArgs:
    """Arguments of one distillation run; a run is a pure function of (these, teachers, seed)."""

    games: list = field(default_factory=lambda: ["Breakout", "Freeway", "Pong", "Qbert"])
    """Atari games in CamelCase, or MinAtar/<Game> (not mixed); paper: the 4-game H-PR study / 10 games"""
    teachers: list = field(default_factory=list)
    """DQN teacher directories, one per game; empty: the zoo's teachers/dqn/<game>/expert/seed0"""
    arch: str = arg("proposed", choices=ARCHS)
    """student architecture: proposed | dist (Rusu 2016) | amn (Parisotto 2016)"""
    task_convs: str | None = arg(None, choices=TASK_CONVS)
    """proposed's per-task convs: teacher_frozen (default) | teacher_finetune | random; dist/amn: random"""
    fc_sizes: list | None = arg(None, each=">= 1")
    """hidden FC widths; default proposed [1028, 512] (paper), dist/amn [512]"""
    replay: dict = field(default_factory=dict)
    """common.replay.ReplayConfig overrides; kind: hpr (default) | rank (PR) | uniform"""
    tau: float = arg(0.01, "> 0")
    """teacher softmax temperature of Eq. 4 (not given; Rusu et al. 2016's 0.01)"""
    total_steps: int = arg(4_000_000, ">= 1")
    """env steps per game (every step plays each game once); paper: up to 4M"""
    eps_start: float = arg(1.0, "[0, 1]")
    """acting epsilon at step 0"""
    eps_end: float = arg(0.1, "[0, 1]")
    """acting epsilon after the decay"""
    eps_decay_steps: int = arg(1_000_000, ">= 0")
    """steps of the linear epsilon decay (paper: 1M)"""
    update_every: int = arg(4, ">= 1")
    """steps between update rounds (one minibatch update per game each; paper: 4)"""
    batch_size: int = arg(32, ">= 1")
    """experiences per minibatch (not given; DQN's 32)"""
    learning_starts: int = arg(50_000, ">= 0")
    """steps per game before the first update (not given; the Nature DQN's replay start)"""
    lr: float = arg(1e-4, "> 0")
    """RMSProp learning rate (not given)"""
    rmsprop_alpha: float = arg(0.99, "[0, 1)")
    """RMSProp smoothing constant"""
    rmsprop_eps: float = arg(1e-5, "> 0")
    """RMSProp epsilon"""
    max_grad_norm: float = arg(0.0, ">= 0")
    """global gradient-norm clip (0 = off)"""
    vrange_steps: int = arg(10_000, ">= 1")
    """teacher steps played to measure [V_min, V_max] for the H-PR partitions (hpr only)"""
    vrange_eps: float = arg(0.05, "[0, 1]")
    """teacher epsilon during that play"""
    eval_every: int = arg(25_000, ">= 1")
    """update rounds between evaluations (paper: 25,000)"""
    eval: dict = field(default_factory=dict)
    """common.evaluation.EvalProtocol overrides; default 100,000 steps at eps 0.05, greedy, 1 env"""
    protocol: dict = field(default_factory=dict)
    """environment protocol overrides (common.envs.AtariProtocol); must match the teachers'"""
    seed: int = 0
    """seeds torch, numpy, python, the envs and the replay sampling"""
    device: str = "auto"
    """auto (GPU if present) | cpu | cuda"""
    torch_threads: int = arg(1, ">= 1")
    """intra-op CPU threads for torch"""
    checkpoint_every: int = arg(250_000, ">= 0")
    """env steps per game between checkpoint boundaries (0 = none)"""
    checkpoint_replay: bool = True
    """save the replay memories in checkpoints (exact resume; GBs at paper size)"""
    log_interval_s: float = arg(30.0, "> 0")
    """seconds between progress lines"""

    @classmethod
    def from_dict(cls, d: dict) -> "HPRArgs":
        a = dataclass_from_dict(cls, d, where="hpr_distillation arguments")
        if a.arch != "proposed" and a.task_convs not in (None, "random"):
            raise ValueError(f"arch '{a.arch}' shares its convs across games, so they cannot come from one "
                             f"teacher: drop task_convs or set it to 'random' (got '{a.task_convs}')")
        if not a.games or not all(isinstance(g, str) for g in a.games):
            raise ValueError(f"games must be a non-empty list of game names, got {a.games!r}")
        if len({g.startswith(MINATAR_PREFIX) for g in a.games}) > 1:
            raise ValueError(f"games mixes MinAtar and Atari ({a.games}): the student has one input format")
        if len(set(a.games)) != len(a.games):
            raise ValueError(f"games lists a game twice: {a.games}")
        if a.teachers and len(a.teachers) != len(a.games):
            raise ValueError(f"teachers must name one DQN teacher per game ({len(a.games)}), got {len(a.teachers)}")
        where = "hpr_distillation arguments"
        if a.fc_sizes is not None and not all(isinstance(n, int) for n in a.fc_sizes):
            fail(where, "fc_sizes", a.fc_sizes, "a list of ints", "set fc_sizes to whole numbers, e.g. [512], or drop "
                 "it for the architecture's default")
        ReplayConfig.from_dict(a.replay)  # validate early
        protocol = AtariProtocol.from_dict(a.protocol)
        why = conv_misfit(CONV_SPECS[domain(a.games[0])], frame_hw(a.games[0], protocol))
        if why:
            fail(where, "protocol.size", protocol.size, f"large enough for the {domain(a.games[0])} student's convs "
                 f"({why})", "raise protocol.size (the teachers' default is 84)")
        EvalProtocol.from_dict({**EVAL_DEFAULTS, **a.eval})
        return a

    def resolved_task_convs(self) -> str:
        return self.task_convs or ("teacher_frozen" if self.arch == "proposed" else "random")

    def resolved_fc_sizes(self) -> list:
        return list(self.fc_sizes or DEFAULT_FC[self.arch])


# ---------------------------------------------------------------------------------------------------
# Actions: each game's outputs among the student's full action set
# ---------------------------------------------------------------------------------------------------
def domain(game: str) -> str:
    return "minatar" if game.startswith(MINATAR_PREFIX) else "atari"


def game_action_ids(game: str, full_action_space: bool = False) -> np.ndarray:
    """Student outputs (full-set action ids) of the env's actions, in the env's order.

    Atari: the ALE action enum values of the game's minimal action set (NOOP 0, FIRE 1, ..., 17);
    MinAtar: indices into its full set (n, l, u, r, d, f). All outputs when the env uses the full set.
    """
    if full_action_space:
        return np.arange(N_OUT[domain(game)])
    if domain(game) == "minatar":
        import re

        from minatar import Environment

        name = re.sub(r"(?<!^)(?=[A-Z])", "_", game[len(MINATAR_PREFIX):]).lower()
        return np.asarray(Environment(name).minimal_action_set(), np.int64)
    import ale_py
    import ale_py.roms

    ale = ale_py.ALEInterface()
    ale.setLoggerMode(ale_py.LoggerMode.Error)
    ale.loadROM(ale_py.roms.get_rom_path(ale_game_id(game)))
    return np.asarray([a.value for a in ale.getMinimalActionSet()], np.int64)


def action_mask(action_ids, n_out: int) -> np.ndarray:
    """Bool [n_out]: True for the outputs that are actions of the game."""
    mask = np.zeros(n_out, bool)
    mask[np.asarray(action_ids)] = True
    return mask


# ---------------------------------------------------------------------------------------------------
# Loss (Eq. 4), priority (Eq. 5: common.replay.td_error_eq5) and exploration
# ---------------------------------------------------------------------------------------------------
def distillation_kl(q_teacher: torch.Tensor, q_student: torch.Tensor, tau: float, mask=None) -> torch.Tensor:
    """Eq. 4 per experience: KL(softmax(q_T / tau) || softmax(q_S)) over the game's actions -> [B].

    `mask` [A] bool (True = the game has the action; default all): the other outputs are discarded, so
    both softmaxes are taken over the game's actions only.
    """
    return softened_kl(q_teacher, q_student, tau, 1.0, mask=mask)


def epsilon_at(step: int, start: float = 1.0, end: float = 0.1, decay_steps: int = 1_000_000) -> float:
    """Acting epsilon: linear from `start` at step 0 to `end` at `decay_steps`, constant after."""
    if decay_steps <= 0:
        return end
    return start + (end - start) * min(step / decay_steps, 1.0)


# ---------------------------------------------------------------------------------------------------
# Student
# ---------------------------------------------------------------------------------------------------
def conv_stack(in_channels: int, spec) -> nn.Sequential:
    """Conv + ReLU layers from (channels, kernel, stride) triples (the teachers' bodies' layout)."""
    layers, c = [], in_channels
    for out_c, k, s in spec:
        layers += [init_layer(nn.Conv2d(c, out_c, k, s)), nn.ReLU()]
        c = out_c
    return nn.Sequential(*layers)


def teacher_convs(teacher) -> list[nn.Conv2d]:
    """The conv layers of a zoo teacher's body, in order."""
    return [m for m in teacher.body.layers if isinstance(m, nn.Conv2d)]


class MultiTaskStudent(nn.Module):
    """Multi-task student Q-network: q_S(s, .) [B, n_out] = fc[task or 0](convs[task or 0](s)).

    ``arch`` decides what is per task: proposed (convs), dist (FC and output layer), amn (nothing).
    """

    def __init__(self, arch: str, obs_shapes, n_out: int, conv_specs, fc_sizes, obs_scale: float):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got '{arch}'")
        self.arch, self.n_out, self.n_tasks = arch, n_out, len(obs_shapes)
        self.obs_shapes = [tuple(s) for s in obs_shapes]
        if len({s[1:] for s in self.obs_shapes}) > 1:
            raise ValueError(f"the games' frames differ in size ({self.obs_shapes}): one student cannot read them")
        self.per_task_convs, self.per_task_fc = arch == "proposed", arch == "dist"
        self.in_channels = max(s[0] for s in self.obs_shapes)  # shared convs: inputs zero-padded to this
        self.register_buffer("obs_scale", torch.tensor(float(obs_scale)), persistent=False)
        if self.per_task_convs:
            convs = [conv_stack(s[0], spec) for s, spec in zip(self.obs_shapes, conv_specs)]
        else:
            convs = [conv_stack(self.in_channels, conv_specs[0])]
        self.convs = nn.ModuleList(convs)
        with torch.no_grad():
            dims = {c(torch.zeros(1, c[0].in_channels, *self.obs_shapes[0][1:])).numel() for c in self.convs}
        if len(dims) > 1:
            raise ValueError(f"the task conv stacks give different feature sizes {sorted(dims)}: the shared FC "
                             "layers need one (use teachers with the same body)")
        self.feature_dim = dims.pop()

        def mlp():
            layers, d = [], self.feature_dim
            for width in fc_sizes:
                layers += [init_layer(nn.Linear(d, width)), nn.ReLU()]
                d = width
            return nn.Sequential(*layers, init_layer(nn.Linear(d, n_out), gain=1.0))

        self.fcs = nn.ModuleList([mlp() for _ in range(self.n_tasks if self.per_task_fc else 1)])

    def features(self, obs: torch.Tensor, task: int) -> torch.Tensor:
        """Conv features [B, feature_dim] of game `task` (3136 for Nature convs on 84x84)."""
        x = obs.to(torch.float32) * self.obs_scale
        if not self.per_task_convs and x.shape[1] < self.in_channels:
            x = F.pad(x, (0, 0, 0, 0, 0, self.in_channels - x.shape[1]))
        return self.convs[task if self.per_task_convs else 0](x).flatten(1)

    def forward(self, obs: torch.Tensor, task: int) -> torch.Tensor:
        return self.fcs[task if self.per_task_fc else 0](self.features(obs, task))


def build_student(args: HPRArgs, obs_shapes, n_out: int, teachers) -> MultiTaskStudent:
    """The student of `args.arch`; proposed's task convs copied from the teachers (and frozen) if asked."""
    dom = domain(args.games[0])
    mode = args.resolved_task_convs()
    from_teacher = mode.startswith("teacher")
    specs = ([[(c.out_channels, c.kernel_size[0], c.stride[0]) for c in teacher_convs(t)] for t in teachers]
             if from_teacher else [CONV_SPECS[dom]] * len(obs_shapes))
    student = MultiTaskStudent(args.arch, obs_shapes, n_out, specs, args.resolved_fc_sizes(),
                               obs_scale=1.0 if dom == "minatar" else 1 / 255.0)
    if from_teacher:
        for g, t in enumerate(teachers):
            mine = [m for m in student.convs[g] if isinstance(m, nn.Conv2d)]
            for ours, theirs in zip(mine, teacher_convs(t)):
                ours.load_state_dict(theirs.state_dict())
        if mode == "teacher_frozen":
            student.convs.requires_grad_(False)
    return student


class GamePolicy(nn.Module):
    """The student restricted to one game, as common.evaluation plays it: logits = Q over the game's actions."""

    recurrent = False

    def __init__(self, student: MultiTaskStudent, task: int, action_ids):
        super().__init__()
        self.student, self.task = student, task
        self.register_buffer("action_ids", torch.as_tensor(np.asarray(action_ids), dtype=torch.long), persistent=False)

    def forward(self, obs, state=None, starts=None) -> NetOut:
        q = self.student(obs, self.task)[:, self.action_ids]
        return NetOut(q, torch.zeros(q.shape[0], device=q.device))

    def initial_state(self, n: int, device=None):
        return None


def load_student(path, device="cpu") -> tuple[MultiTaskStudent, dict]:
    """Load model.pt written by :func:`train` -> (student, metadata with games and action_ids)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"student file {path} does not exist: train it first "
                                "(python -m papers.hpr_distillation.method --out DIR --args ...)")
    d = torch.load(path, map_location=device, weights_only=False)
    student = MultiTaskStudent(d["arch"], d["obs_shapes"], d["n_out"], d["conv_specs"], d["fc_sizes"], d["obs_scale"])
    student.load_state_dict(d["state_dict"])
    return student.to(device).eval(), {k: v for k, v in d.items() if k != "state_dict"}


# ---------------------------------------------------------------------------------------------------
# H-PR partition range from teacher play
# ---------------------------------------------------------------------------------------------------
@torch.no_grad()
def measure_value_range(teacher, game: str, protocol: dict, steps: int, eps: float, seed: int) -> tuple:
    """[V_min, V_max] of V(s) = max_a Q_T(s, a) (Eq. 1) over `steps` states of ε-greedy teacher play."""
    if steps < 1:
        raise ValueError(f"vrange_steps must be >= 1 for replay kind 'hpr', got {steps}")
    env = make_vec_env(game, 1, protocol)
    rng = np.random.default_rng(seed)
    obs = env.reset(seed)
    v_min, v_max = np.inf, -np.inf
    for _ in range(steps):
        q = teacher.q_values(obs)[0]
        v = float(q.max())
        v_min, v_max = min(v_min, v), max(v_max, v)
        a = int(rng.integers(env.n_actions)) if rng.random() < eps else int(q.argmax())
        obs = env.step(np.array([a])).obs
    env.close()
    if not v_max > v_min:  # a teacher whose values do not vary: one effective partition
        v_max = v_min + 1e-6
    return float(v_min), float(v_max)


# ---------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------
def _seed(*keys: int) -> int:
    """A reproducible seed for stream `keys` (e.g. (seed, ENV, boundary, game))."""
    return derive_seed(*keys) % (2**31 - 1)


TRAIN_RNG, ENV, VRANGE, EVAL = 0, 1, 2, 3  # independent random streams of a run


def _check_teacher(teacher, path, game, env, n_legal) -> None:
    if not teacher.is_dqn:
        raise ValueError(f"teacher {path} for {game} is {teacher.meta.get('algo', 'an actor-critic')}: policy "
                         "distillation here needs a DQN teacher (Q-values); train one with common.zoo --algo dqn")
    if teacher.n_actions != env.n_actions or env.n_actions != n_legal:
        raise ValueError(f"teacher {path} has {teacher.n_actions} actions but {game} has {env.n_actions} under "
                         "this protocol: set protocol.full_action_space as the teacher was trained")
    if teacher.obs_shape != tuple(env.obs_shape):
        raise ValueError(f"teacher {path} reads observations {teacher.obs_shape} but {game} gives "
                         f"{tuple(env.obs_shape)}: use the teacher's protocol (frame_stack, size)")


def train(args: HPRArgs, out_dir: str | os.PathLike, stop_after_steps: int | None = None) -> dict:
    """Distil the teachers of `args.games` into one student; write curve.csv, eval.json, model.pt.

    Resumes from <out>/checkpoint.pt if it exists. `stop_after_steps` stops early without writing the
    final outputs (tests use it to simulate a killed job).
    """
    torch.set_num_threads(args.torch_threads)
    device = resolve_device(args.device)
    seed_everything(args.seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    games, G = list(args.games), len(args.games)
    dom = domain(games[0])
    protocol = asdict(AtariProtocol.from_dict(args.protocol))
    frameskip = 1 if dom == "minatar" else protocol["frameskip"]
    eval_protocol = EvalProtocol.from_dict({
        **EVAL_DEFAULTS, **{k: protocol[k] for k in ("noop_max", "max_frames", "repeat_action_probability",
                                                      "full_action_space", "frame_stack", "size")}, **args.eval})

    # ---- teachers, envs, the action sets ---------------------------------------------------------
    teacher_paths = [str(p) for p in (args.teachers or [teacher_dir("dqn", g, "expert", 0) for g in games])]
    teachers = [load_teacher(p, device=str(device)) for p in teacher_paths]
    envs = [make_vec_env(g, 1, protocol) for g in games]
    n_out = N_OUT[dom]
    action_ids = [game_action_ids(g, protocol["full_action_space"]) for g in games]
    masks = [action_mask(ids, n_out) for ids in action_ids]
    for t, p, g, e, ids in zip(teachers, teacher_paths, games, envs, action_ids):
        _check_teacher(t, p, g, e, len(ids))
    obs_shapes = [tuple(e.obs_shape) for e in envs]
    masks_t = [torch.as_tensor(m, device=device) for m in masks]

    # ---- student and optimiser ------------------------------------------------------------------
    student = build_student(args, obs_shapes, n_out, teachers).to(device)
    policies = [GamePolicy(student, g, ids).to(device) for g, ids in enumerate(action_ids)]  # acting, evaluation
    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.RMSprop(params, lr=args.lr, alpha=args.rmsprop_alpha, eps=args.rmsprop_eps, foreach=True)

    # ---- checkpoint, V ranges, replay memories -----------------------------------------------------
    ckpt_path = out / "checkpoint.pt"
    ck = read_checkpoint(ckpt_path, device) if ckpt_path.exists() else None
    if ck is not None:
        now, then = asdict(args), ck["args"]
        changed = sorted(k for k in now if k not in RESUME_FREE and now[k] != then.get(k))
        if changed:
            raise ValueError(f"{ckpt_path} was written with other arguments ({', '.join(changed)} differ): rerun "
                             "with the same arguments to resume, or delete the checkpoint to start afresh")
    replay_cfg = ReplayConfig.from_dict(args.replay)
    replay_cfg = replace(replay_cfg, frame_stack=1 if dom == "minatar" else protocol["frame_stack"])
    if ck is not None:
        v_ranges = ck["v_ranges"]
    elif replay_cfg.kind == "hpr":
        v_ranges = [measure_value_range(t, g, protocol, args.vrange_steps, args.vrange_eps, _seed(args.seed, VRANGE, i))
                    for i, (t, g) in enumerate(zip(teachers, games))]
    else:
        v_ranges = [None] * G
    # MinAtar frames carry all channels: one slot per step holds the whole (C, 10, 10) observation
    frame_shapes = [s if dom == "minatar" else s[1:] for s in obs_shapes]
    mems = [ReplayMemory(replay_cfg, n_out, m, v, fs) for m, v, fs in zip(masks, v_ranges, frame_shapes)]
    rng = np.random.default_rng(_seed(args.seed, TRAIN_RNG))

    write_json(out / "config.json", {"hpr_distillation": asdict(args), "teachers": teacher_paths,
                                     "task_convs": args.resolved_task_convs(), "fc_sizes": args.resolved_fc_sizes(),
                                     "replay": asdict(replay_cfg), "eval": asdict(eval_protocol),
                                     "v_ranges": v_ranges, "action_ids": [ids.tolist() for ids in action_ids],
                                     "trainable_parameters": sum(p.numel() for p in params)})
    curve_tmp = out / "curve.partial.csv"
    start_step, updates, n_evals, wall0, curve_rows = 0, 0, 0, 0.0, None
    recent = [[] for _ in games]
    kl_sum, kl_n = [0.0] * G, [0] * G
    learn_from = args.learning_starts
    if ck is not None:
        student.load_state_dict(ck["student"])
        opt.load_state_dict(ck["optimizer"])
        if ck["replay"] is not None:
            for m, s in zip(mems, ck["replay"]):
                m.load_state_dict(s)
        else:  # approximate resume: refill the memories before learning again
            learn_from = ck["step"] + args.learning_starts
        set_rng_state(ck["rng"])
        rng.bit_generator.state = ck["train_rng"]
        start_step, updates, n_evals, wall0 = ck["step"], ck["updates"], ck["n_evals"], ck["wall_time"]
        curve_rows, recent, (kl_sum, kl_n) = ck["curve_rows"], ck["recent"], ck["kl"]
        print(f"[H-PR {args.arch} seed {args.seed}] resuming from checkpoint at step {start_step:,}"
              + ("" if ck["replay"] is not None else " (replay not saved: refilling the memories)"),
              file=sys.stderr, flush=True)
    curve = CsvLog(curve_tmp, CURVE_FIELDS, keep=curve_rows)  # resumed: cut back to the checkpoint's rows
    boundaries = Boundaries(args.checkpoint_every)
    label = f"H-PR {args.arch}/{replay_cfg.kind} {G} games seed {args.seed}"
    progress = Progress(args.total_steps, label, args.log_interval_s)
    last_eval: dict = {}

    def begin_segment(step: int):
        """Reset every game with the seeds of checkpoint segment `step // checkpoint_every`."""
        boundary = boundaries.segment(step)
        return [e.reset(_seed(args.seed, ENV, boundary, g)) for g, e in enumerate(envs)], [True] * G

    def save_checkpoint(step: int) -> None:
        curve.flush()
        torch_save({"args": asdict(args), "student": student.state_dict(), "optimizer": opt.state_dict(),
                    "replay": [m.state_dict() for m in mems] if args.checkpoint_replay else None,
                    "v_ranges": v_ranges, "rng": rng_state(), "train_rng": rng.bit_generator.state,
                    "step": step, "updates": updates, "n_evals": n_evals, "wall_time": time.time() - t_start,
                    "curve_rows": curve.rows, "recent": recent, "kl": (kl_sum, kl_n)}, ckpt_path)

    def update(g: int, beta: float) -> float:
        """One minibatch update on game g (Eq. 4 weighted by Eq. 8), then the Eq. 5 priorities."""
        idx, batch, w = mems[g].sample(args.batch_size, rng, beta=beta)
        obs = torch.from_numpy(batch.obs.reshape(len(idx), *obs_shapes[g])).to(device)
        q_teacher = torch.from_numpy(batch.q_teacher).to(device)
        q_student = student(obs, g)
        kl = distillation_kl(q_teacher, q_student, args.tau, masks[g])
        loss = (torch.from_numpy(w).to(device) * kl).mean()
        check_finite(loss, {f"distillation KL on {games[g]} (Eq. 4)": kl}, label,
                     f"update {updates} (step {step + 1:,} per game)",
                     f"lower lr (now {args.lr}) or raise tau (now {args.tau})", ckpt_path)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if args.max_grad_norm > 0:
            nn.utils.clip_grad_norm_(params, args.max_grad_norm)
        opt.step()
        mems[g].update_priorities(idx, td_error_eq5(q_teacher, q_student.detach(), args.tau, masks_t[g]).cpu().numpy())
        return kl.detach().mean().item()

    def evaluate_all(step: int) -> None:
        nonlocal n_evals
        scores = []
        for g, game in enumerate(games):
            res = evaluate(policies[g], game, eval_protocol,
                           _seed(args.seed, EVAL, n_evals, g), device)
            kl = kl_sum[g] / kl_n[g] if kl_n[g] else float("nan")
            curve.write((game, step, step * frameskip, updates, f"{time.time() - t_start:.2f}",
                         res["mean"], res["episodes"], kl))
            kl_sum[g], kl_n[g] = 0.0, 0
            last_eval[game] = {"mean": res["mean"], "std": res["std"], "episodes": res["episodes"],
                               "scores": res["scores"], "env_steps": step, "updates": updates}
            scores.append(f"{game} {res['mean']:.2f} ({res['episodes']} games)")
        n_evals += 1
        print(f"[{label}] eval at step {step:,}, update {updates:,}: " + " | ".join(scores),
              file=sys.stderr, flush=True)

    obs, starts = begin_segment(start_step)
    t_start = time.time() - wall0
    try:
        for step in range(start_step, args.total_steps):
            if stop_after_steps is not None and step - start_step >= stop_after_steps:
                return {"stopped_at_step": step}
            if boundaries.at(step, start_step):
                save_checkpoint(step)
                obs, starts = begin_segment(step)
            # ---- act: one ε-greedy step in every game, one experience per game ----------------------
            eps = epsilon_at(step, args.eps_start, args.eps_end, args.eps_decay_steps)
            with torch.inference_mode():
                for g in range(G):
                    o = torch.from_numpy(obs[g]).to(device)
                    q_full = np.zeros(n_out, np.float32)
                    q_full[action_ids[g]] = teachers[g].q_values(o)[0].cpu().numpy()
                    frame = obs[g][0][None] if dom == "minatar" else obs[g][0]
                    mems[g].add(frame, q_full, episode_start=starts[g])
                    if rng.random() < eps:
                        a = int(rng.integers(len(action_ids[g])))
                    else:
                        a = int(policies[g](o).logits[0].argmax())  # greedy over the game's actions only
                    st = envs[g].step(np.array([a]))
                    obs[g], starts[g] = st.obs, bool(st.game_over[0])
                    recent[g] = (recent[g] + [score for _, score, _ in st.episodes])[-100:]
            # ---- learn: one minibatch update per game every `update_every` steps --------------------
            if (step + 1) % args.update_every == 0 and step + 1 >= learn_from:
                beta = replay_cfg.beta((step + 1) / args.total_steps)
                for g in range(G):
                    kl_sum[g] += update(g, beta)
                    kl_n[g] += 1
                updates += 1
                if updates % args.eval_every == 0:
                    evaluate_all(step + 1)
            progress.update(step + 1, [s for r in recent for s in r[-10:]])
        if updates % args.eval_every != 0 or updates == 0:
            evaluate_all(args.total_steps)
    finally:
        curve.close()
        for e in envs:
            e.close()
    progress.update(args.total_steps, [s for r in recent for s in r[-10:]], force=True)
    conv_specs = [[(c.out_channels, c.kernel_size[0], c.stride[0]) for c in conv if isinstance(c, nn.Conv2d)]
                  for conv in student.convs]
    torch_save({"arch": args.arch, "games": games, "obs_shapes": obs_shapes, "n_out": n_out,
                "conv_specs": conv_specs * (1 if student.per_task_convs else G),
                "fc_sizes": args.resolved_fc_sizes(), "obs_scale": float(student.obs_scale),
                "action_ids": [ids.tolist() for ids in action_ids], "teachers": teacher_paths,
                "state_dict": {k: v.detach().cpu() for k, v in student.state_dict().items()}}, out / "model.pt")
    write_json(out / "eval.json", {"games": last_eval, "protocol": asdict(eval_protocol)})
    os.replace(curve_tmp, out / "curve.csv")  # last: curve.csv's presence marks a finished run
    ckpt_path.unlink(missing_ok=True)
    return {"updates": updates, "env_steps": args.total_steps, "wall_time": time.time() - t_start}


def main(argv=None):
    """python -m papers.hpr_distillation.method --out DIR --args '{games: [...], teachers: [...]}' [--set k=v]"""
    import argparse

    from common.cli import add_run_options, run_mapping

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_options(ap, "run directory (checkpoint, curve.csv, eval.json, model.pt)", "HPRArgs fields as YAML/JSON")
    a = ap.parse_args(argv)
    res = train(HPRArgs.from_dict(run_mapping(a)), a.out)
    print(f"done: {res['updates']:,} update rounds, {res['env_steps']:,} steps per game -> {a.out}", file=sys.stderr)


if __name__ == "__main__":
    from common.cli import run

    run(main)
