"""Offline deep alignment (Sec. 4.2 "Offline training", Sec. 5.3, Fig. 6a) and the data of Fig. 5.

    python -m papers.cdrl.alignment --source runs/.../expert_pong/seed100 --target runs/.../expert_bowling/seed100 \
        --out runs/<tier>/cdrl/alignment/pong_to_bowling --args '{obs_steps: 20000, fit_steps: 20000}'

Stage 1 of the offline protocol: the *target-task expert* (Bowling) plays its own game; on every observation
it sees, the *source expert* (Pong) and the target expert give their logits, each running its own LSTM along
the same trajectory (state reset at game starts). An alignment network F (4 hidden ReLU layers, as Sec. 5.3
says; width 512 as the code) is fitted with ``train_alignment_offline`` so that softmax(F(z_Pong)) matches
softmax(z_Bowling). Stage 2 is an ordinary run (papers/cdrl/train.py, kd_distill with ``offline_alignment``).

Choices the paper leaves open (written here and in papers/cdrl/README.md):

* observations: the target expert's own play, sampling from its policy (the A3C convention), on the target
  game's training protocol (read from the target expert's model.pt); ``obs_steps`` agent steps over
  ``num_envs`` envs, seeded;
* a held-out split: the last ``holdout`` fraction of the collected steps is never trained on; Fig. 5's
  distributions and the reported held-out KL use it;
* Fig. 5 "action probability distributions" = the mean over held-out target-task states of each network's
  softmax (source expert, target expert, aligned source expert): all three on the *target* task's frames,
  the frames F is trained and used on.

Writes ``alignment.pt`` (papers.cdrl.method.save_alignment: the file ``offline_alignment`` reads),
``action_dists.csv`` (action, source, target, aligned) and ``fit.json`` (losses, held-out KL before/after).
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from common.a2c import load_policy
from common.checks import arg, fail
from common.envs import dataclass_from_dict, make_vec_env
from common.io import atomic_path, seed_everything, write_json
from papers.cdrl.method import AlignmentNet, alignment_loss, save_alignment, train_alignment_offline
from papers.cdrl.train import teacher_file


@dataclass
class AlignArgs:
    """Offline alignment: a pure function of these and the two experts."""

    obs_steps: int = arg(20_000, ">= 1")
    """agent steps of the target expert's play (summed over envs) whose frames make the data set"""
    num_envs: int = arg(8, ">= 1")
    """envs the target expert plays in parallel"""
    holdout: float = arg(0.2, "(0, 1)")
    """last fraction of the collected steps kept out of the fit (Fig. 5 and the held-out KL use it)"""
    fit_steps: int = arg(20_000, ">= 1")
    """Adam steps of train_alignment_offline"""
    batch_size: int = arg(256, ">= 1")
    """minibatch of train_alignment_offline"""
    lr: float = arg(1.0e-4, "> 0")
    """Adam learning rate (the code's alignment lr)"""
    layers: int = arg(4, ">= 1")
    """hidden layers of F (Sec. 5.3: four fully connected layers)"""
    width: int = arg(512, ">= 1")
    """units per hidden layer (the code's 512)"""
    activation: str = arg("relu", choices=("relu", "elu"))
    """Sec. 5.3's offline F uses ReLU (the code's online F: ELU)"""
    seed: int = 0
    """seeds the envs, the sampling of actions, F's initialisation and the minibatches"""

    @classmethod
    def from_dict(cls, d: dict) -> "AlignArgs":
        a = dataclass_from_dict(cls, d, where="cdrl alignment arguments")
        if a.obs_steps < a.num_envs:
            fail("cdrl alignment arguments", "obs_steps", a.obs_steps, f">= num_envs ({a.num_envs})",
                 "collect at least one step per env")
        return a


@torch.no_grad()
def collect_logits(source, target, game: str, protocol: dict, steps: int, num_envs: int, seed: int):
    """(z_source [S, A_src], z_target [S, A_tgt]) on the target expert's own play, in step order."""
    env = make_vec_env(game, num_envs, protocol)
    gen = torch.Generator().manual_seed(seed)
    obs = torch.from_numpy(env.reset(seed))
    starts = torch.ones(num_envs, dtype=torch.bool)
    s_src, s_tgt = source.initial_state(num_envs), target.initial_state(num_envs)
    zs, zt = [], []
    for _ in range(max(1, steps // num_envs)):
        o_src, o_tgt = source(obs, s_src, starts), target(obs, s_tgt, starts)
        s_src, s_tgt = o_src.state, o_tgt.state
        zs.append(o_src.logits)
        zt.append(o_tgt.logits)
        a = torch.multinomial(torch.softmax(o_tgt.logits, -1), 1, generator=gen).squeeze(-1)
        st = env.step(a.numpy())
        starts, obs = torch.from_numpy(st.game_over.copy()), torch.from_numpy(st.obs)
    env.close()
    return torch.cat(zs).float(), torch.cat(zt).float()


def action_distributions(z_source, z_target, aligned) -> pd.DataFrame:
    """Fig. 5: the mean softmax over states of the source expert, the target expert and F(source)."""
    rows = {"source": torch.softmax(z_source, -1).mean(0), "target": torch.softmax(z_target, -1).mean(0),
            "aligned": torch.softmax(aligned, -1).mean(0)}
    n = max(len(v) for v in rows.values())
    df = pd.DataFrame({"action": range(n)})
    for k, v in rows.items():
        df[k] = list(v.numpy()) + [np.nan] * (n - len(v))
    return df


def run(args: AlignArgs, source_dir, target_dir, out_dir) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(args.seed)
    source, target = load_policy(teacher_file(source_dir)), load_policy(teacher_file(target_dir))
    meta = torch.load(teacher_file(target_dir), map_location="cpu", weights_only=False)
    z_src, z_tgt = collect_logits(source, target, meta["game"], meta["protocol"], args.obs_steps, args.num_envs,
                                  args.seed)
    n_fit = int(round(len(z_src) * (1 - args.holdout)))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        f = AlignmentNet(z_src.shape[-1], z_tgt.shape[-1], args.layers, args.width, args.activation)
    with torch.no_grad():
        before = alignment_loss(f, z_src[n_fit:], z_tgt[n_fit:]).mean().item()
    history = train_alignment_offline(f, z_src[:n_fit], z_tgt[:n_fit], args.fit_steps, lr=args.lr,
                                      batch_size=args.batch_size, seed=args.seed)
    with torch.no_grad():
        after = alignment_loss(f, z_src[n_fit:], z_tgt[n_fit:]).mean().item()
        dists = action_distributions(z_src[n_fit:], z_tgt[n_fit:], f(z_src[n_fit:]))
    with atomic_path(out / "action_dists.csv") as tmp:
        dists.to_csv(tmp, index=False)
    fit = {"args": asdict(args), "source": str(source_dir), "target": str(target_dir), "game": meta["game"],
           "states": len(z_src), "fit_states": n_fit, "heldout_kl_before": before, "heldout_kl_after": after,
           "loss_first": history[0] if history else None, "loss_last": history[-1] if history else None,
           "loss_every_100": history[::100]}
    write_json(out / "fit.json", fit)
    save_alignment(out / "alignment.pt", [f])  # last: its presence marks a finished fit
    print(f"alignment {meta['game']}: held-out KL {before:.4f} -> {after:.4f} on {len(z_src) - n_fit} states",
          file=sys.stderr, flush=True)
    return fit


def main(argv=None):
    import argparse

    from common.cli import parse_mapping

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", required=True, help="source-task expert (run directory or model.pt), e.g. Pong")
    ap.add_argument("--target", required=True, help="target-task expert (run directory or model.pt), e.g. Bowling")
    ap.add_argument("--out", required=True, help="directory for alignment.pt, action_dists.csv, fit.json")
    ap.add_argument("--args", default="{}", help="AlignArgs as YAML/JSON")
    a = ap.parse_args(argv)
    run(AlignArgs.from_dict(parse_mapping(a.args)), a.source, a.target, a.out)


if __name__ == "__main__":
    from common.cli import run as cli_run

    cli_run(main)
