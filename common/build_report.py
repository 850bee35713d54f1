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
    ap.add_argument("--sections", required=True,
                    help="JSON list of {title, tables: [md], figs: [png], note, budget, teachers: [eval.json]}")
    ap.add_argument("--claims", help="the tier's claims scorecard (common/claims.py); the report opens with it")
    a = ap.parse_args(argv)
    cfg = json.loads(a.config)
    secs = json.loads(a.sections)
    teachers = sorted({p for s in secs for p in s.get("teachers", [])})
    budget = "; ".join([s["budget"] for s in secs if s.get("budget")]
                       + [f"teachers (SB3 {cfg['teachers']['algo'].upper()}): {cfg['teachers']['steps']['expert']:,} steps each"])
    sections = [("Claims scorecard", Path(a.claims).read_text(), [])] if a.claims else []
    sections.append(("Teachers", teacher_table(teachers), []))
    for s in secs:
        text = "\n".join(Path(t).read_text() for t in s.get("tables", []))
        sections.append((s["title"], text + ("\n" + s["note"] if s.get("note") else ""), list(s.get("figs", []))))
    sections.append(("Status of the papers",
                     "Produced by the pipeline in this commit: the sections above. What each paper still lacks is "
                     "listed in the README's status table.", []))
    write_report_page(a.out, f"Knowledge transfer in deep RL: reproduction report ({a.tier} tier)",
                      {"command": command(a.tier), "tier": a.tier, "budget": budget}, sections)


if __name__ == "__main__":
    from common.cli import run

    run(main)
