"""cA3C's collaborative mode (Sec. 5.4, Fig. 6d): source and target trained *from scratch together*.

    python -m papers.cdrl.train --out DIR --args '{method: collaborative, a2c: {game: Bowling, seed: 0, ...},
                                                 source: {game: Pong}, ca3c: {align_from: 3000000, ...}}'

Two learners of the shared A2C learner (:class:`common.a2c.Learner`), each with its own envs, network and
optimiser, run in **lock-step**: one round = one update of the source, then one update of the target.

* The source (``source``: A2CArgs overrides over the target's ``a2c``; default game Pong, seed = target seed
  + :data:`SOURCE_SEED_OFFSET`) learns with plain A3C/A2C from its own environment (the paper: "Pong never
  distils", docs/reference_notes.md §3).
* The target learns A2C + :class:`papers.cdrl.method.CA3CHook` (mode kd_distill: online alignment network F
  from T1 = ``ca3c.align_from``, distillation into the distillation head from T2 = ``ca3c.distill_from``
  until ``ca3c.distill_until``) with one teacher: :class:`LiveTeacher`, a *view* of the source's network,
  never a copy. The hook calls it under ``no_grad`` on the target's observations with its own LSTM state,
  so at target update k the teacher is the source after its k-th update (round k) -- a pure function of the
  seeds, as the two learners share the global RNG in a fixed order.

Both learners must have the same update size, number of updates and checkpoint interval (checked).

Checkpoints and exact resume: the two learners' own checkpoint files are off; at every checkpoint boundary
(the start of a round whose update index is a multiple of the checkpoint interval) one file,
``<out>/checkpoint.pt``, is written atomically with *both* learners' states and the one global RNG state of
that moment, so they can never be at different rounds. A rerun restores both from it, then that RNG state
(the learners reset their envs lazily, at their first step, so nothing draws from the RNG in between) and
continues bit-for-bit as the uninterrupted run (tests/test_cdrl_collaborative.py). Should a run die inside
the final writes (the source finished, the target not), the rerun cannot resume the source's finished
curve and starts both afresh.

Layout: the run directory is the *target's* run directory (config.json, curve.csv, train_stats.csv, model.pt,
eval.json, like every other cdrl run, so tables and rules read it unchanged) plus ``run.json`` and
``source/`` with the source's own config.json, curve.csv, train_stats.csv, model.pt and eval.json.
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

import torch

from common.a2c import A2CArgs, Learner, check_lockstep, load_policy, run_rounds
from common.envs import make_vec_env
from common.evaluation import EvalProtocol, evaluate
from common.io import read_checkpoint, resolve_device, rng_state, seed_everything, set_rng_state, torch_save, write_json
from common.nets import make_net
from papers.cdrl.method import CA3CHook

SOURCE_SEED_OFFSET = 1000
"""the source learner's seed = the target's seed + this (so the two nets start from different weights)"""


class LiveTeacher:
    """The source learner's network as a cA3C teacher: a live view (no copy), recurrent like the net it wraps.

    Not an ``nn.Module`` on purpose: CA3CHook freezes module teachers (``requires_grad_(False)``), which
    would stop the source from learning. :func:`papers.cdrl.method.teacher_logits` calls it under
    ``no_grad``; it never steps the source.
    """

    recurrent = True

    def __init__(self, net: torch.nn.Module):
        self.net = net

    def forward_sequence(self, obs, state=None, starts=None):
        return self.net.forward_sequence(obs, state, starts)


class Collaborative:
    """Source and target learners in lock-step, with one checkpoint for both (module docstring)."""

    def __init__(self, run_args, out_dir):
        self.run_args = run_args
        self.out = out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        tgt = A2CArgs.from_dict(run_args.a2c_args())
        src = A2CArgs.from_dict(run_args.source_a2c_args())
        self.ckpt_path = out / "checkpoint.pt"
        ck = None
        if self.ckpt_path.exists():
            if (out / "source" / "curve.csv").exists():
                print(f"[collaborative] {out}: the source finished but the target did not; its finished curve "
                      "cannot be resumed: starting both afresh", file=sys.stderr, flush=True)
                self.ckpt_path.unlink()
            else:
                ck = read_checkpoint(self.ckpt_path, resolve_device(tgt.device))
        # the source: built as an a3c run of papers/cdrl/train.py
        seed_everything(src.seed)
        src_env = make_vec_env(src.game, src.num_envs, src.protocol, num_threads=src.env_threads)
        src_net = make_net(src.net, src_env.obs_shape, src_env.n_actions).to(resolve_device(src.device))
        self.source = Learner(src, out / "source", agent=src_net, env=src_env, own_checkpoint=False,
                              resume=None if ck is None else ck["source"])
        # the target: a kd_distill student whose one teacher is the live source network
        seed_everything(tgt.seed)
        tgt_env = make_vec_env(tgt.game, tgt.num_envs, tgt.protocol, num_threads=tgt.env_threads)
        tgt_net = make_net(tgt.net, tgt_env.obs_shape, tgt_env.n_actions).to(resolve_device(tgt.device))
        self.ca3c = run_args.ca3c_args()
        self.hook = CA3CHook(self.ca3c, tgt_net, [LiveTeacher(src_net)], seed=tgt.seed)
        self.target = Learner(tgt, out, agent=tgt_net, hook=self.hook, env=tgt_env, own_checkpoint=False,
                              resume=None if ck is None else ck["target"])
        check_lockstep({"source": self.source, "target": self.target}, "collaborative")
        if ck is not None:
            if ck["source"]["update"] != ck["target"]["update"]:  # cannot happen: one file holds both
                raise RuntimeError(f"checkpoint {self.ckpt_path} holds learners at different updates")
            set_rng_state(ck["rng"])

    @property
    def round(self) -> int:
        """Rounds done = updates done by each learner."""
        return self.target.update

    @property
    def done(self) -> bool:
        return self.target.done

    def save_checkpoint(self) -> None:
        rng = rng_state()
        torch_save({"source": self.source.checkpoint_state(rng), "target": self.target.checkpoint_state(rng),
                    "rng": rng, "round": self.round}, self.ckpt_path)

    def step_round(self) -> None:
        """One round: checkpoint (at a boundary), one source update, then one target update."""
        if self.source.at_boundary:
            self.save_checkpoint()
        self.source.step()
        self.target.step()

    def close(self) -> None:
        self.source.close()
        self.target.close()

    def train(self, stop_after_rounds: int | None = None) -> dict:
        """All rounds, then both learners' outputs; `stop_after_rounds` simulates a killed job (tests)."""
        stopped = run_rounds(self, stop_after_rounds)
        if stopped is not None:
            return stopped
        rs = self.source.finish()
        rt = self.target.finish()   # last: the target's curve.csv marks the finished run
        self.ckpt_path.unlink(missing_ok=True)
        self.source.cleanup()       # the partial CSVs a resume would need, now that no checkpoint is left
        self.target.cleanup()
        return {**rt, "source": rs}


def run(run_args, out_dir, stop_after_rounds: int | None = None) -> dict:
    """Train both learners, then evaluate each policy alone (eval.json, source/eval.json)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for f in (out / "eval.json", out / "source" / "eval.json"):
        f.unlink(missing_ok=True)  # a rerun never leaves a stale evaluation behind
    col = Collaborative(run_args, out)
    src, tgt = col.source.args, col.target.args
    info = {"ca3c_resolved": asdict(col.ca3c), "teacher": f"live source network ({src.game} seed {src.seed})",
            "teacher_actions": col.hook.teacher_actions, "distill_head": col.hook.head,
            "online_alignment": col.hook.online_alignment}
    print(f"[{tgt.game} seed {tgt.seed}] cdrl collaborative with {src.game} seed {src.seed}: {info}",
          file=sys.stderr, flush=True)
    write_json(out / "run.json", {**asdict(run_args), "a2c_resolved": asdict(tgt), "source_resolved": asdict(src),
                                  **info})
    result = col.train(stop_after_rounds)
    if "stopped_at_round" in result:
        return result
    protocol = EvalProtocol.from_dict(run_args.eval_args())
    evals = {}
    for d, a in ((out / "source", src), (out, tgt)):
        ev = evaluate(load_policy(d / "model.pt"), a.game, protocol, seed=a.seed)
        ev.update(policy=str(d / "model.pt"), method="collaborative",
                  role="source" if d != out else "target")
        write_json(d / "eval.json", ev)
        evals[ev["role"]] = ev["mean"]
        print(f"[{a.game} seed {a.seed}] eval ({ev['role']}): {ev['mean']:.1f} ± {ev['std']:.1f} over "
              f"{ev['episodes']} games", file=sys.stderr, flush=True)
    return {**result, "eval_mean": evals["target"], "source_eval_mean": evals["source"]}
