"""Build the tier's report page (results/<tier>/report/index.md): every table and figure, with the command,
commit, tier, budgets and machine. Called by the `report` rule; safe to rerun."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from common.io import read_json
from common.report import to_markdown, write_report_page

COMMANDS = {"default": "snakemake --cores 16 all",
            "smoke": "snakemake --cores 2 all --configfile config/smoke.yaml",
            "paper": "snakemake --workflow-profile profiles/slurm all --configfile config/paper.yaml"}


def command(tier: str) -> str:
    """The command that builds this tier (a recorded run has its config under config/recorded/)."""
    if tier in COMMANDS:
        return COMMANDS[tier]
    return f"snakemake --cores 2 all --configfile config/recorded/{tier}.yaml"


def teacher_table(paths: list[str]) -> str:
    rows = []
    for p in paths:
        ev = read_json(p)
        cfg_path = Path(p).with_name("config.json")
        cfg = read_json(cfg_path) if cfg_path.exists() else {}
        rows.append({"game": cfg.get("game", Path(p).parts[-5]), "algo": cfg.get("algo", Path(p).parts[-6]),
                     "kind": cfg.get("kind", Path(p).parts[-3]), "steps": cfg.get("steps", float("nan")),
                     "score mean": ev.get("mean"), "score std": ev.get("std"), "games": ev.get("episodes")})
    if not rows:
        return "No teachers are named in this tier's config.\n"
    return to_markdown(pd.DataFrame(rows), "Teachers (stable-baselines3), raw game score of whole games")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tier", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--config", required=True, help="the resolved config as JSON")
    ap.add_argument("--kf-table2", required=True)
    ap.add_argument("--kf-independence", required=True)
    ap.add_argument("--kf-figs", nargs="+", required=True)
    ap.add_argument("--teachers", nargs="*", default=[])
    a = ap.parse_args(argv)
    cfg = json.loads(a.config)
    kf = cfg["knowledge_flow"]
    runs = f"{kf['a2c']['total_steps']:,} env steps per run (paper: 40M), {kf['seeds']} seeds, top {kf['top_k']}"
    budget = (f"Knowledge Flow: {runs}; teachers (SB3 {cfg['teachers']['algo'].upper()}): "
              f"{cfg['teachers']['steps']['expert']:,} steps each")
    sections = [
        ("Teachers", teacher_table(a.teachers), []),
        ("Knowledge Flow: Table 2 (expert / non-expert teachers, fine-tuning, A3C baseline)",
         Path(a.kf_table2).read_text() + "\n" + Path(a.kf_independence).read_text()
         + "\nCaveats: a synchronous A2C with 16 envs stands in for the paper's 16 asynchronous A3C workers, "
         "and PPO-trained teachers for the authors' A3C teachers; scores far below the paper's at reduced budgets "
         "are a statement about budget. Whether Knowledge Flow beats the baseline and fine-tuning *at this budget* "
         "is what the table shows, read with its intervals.", list(a.kf_figs)),
        ("Status of the papers",
         "Produced by the pipeline so far: the teachers and Knowledge Flow's Table 2 with its curves and p_w "
         "figures. Knowledge Flow's Table 1, Table 7, the ablations (Figs. 8-11) and supervised Tables 3-6, "
         "H-PR distillation, cA3C and the Generative Adversarial Simulator have open issues; their tables are "
         "not produced yet.", []),
    ]
    write_report_page(a.out, f"Knowledge transfer in deep RL: reproduction report ({a.tier} tier)",
                      {"command": command(a.tier), "tier": a.tier, "budget": budget},
                      sections)


if __name__ == "__main__":
    from common.cli import run

    run(main)
