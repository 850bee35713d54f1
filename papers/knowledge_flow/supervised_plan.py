"""The pipeline's plan for Knowledge Flow's supervised Tables 3-6 (config ``kf_supervised``; supervised.smk): pure
functions of the config, plus the data check (paths only, no torchvision import), made when the Snakefile loads.

:func:`tier_plan` says which presets a tier runs and, for each, why it is not run when its datasets are absent
(:func:`unavailable`, :func:`missing_data`); :func:`check_tier_config` names errors in the section before any job
starts.
"""

from __future__ import annotations

from pathlib import Path

from common.datasets import STREAMED, TORCHVISION, expected_path, fetch_command
from papers.knowledge_flow.supervised_args import SupArgs
from papers.knowledge_flow.supervised_presets import EXPERIMENTS, PAPER_ROWS, experiment_args


def experiment_datasets(args: SupArgs) -> list[str]:
    """The datasets an experiment reads: its target, then its teachers' source datasets (once each)."""
    return list(dict.fromkeys([args.dataset] + [t.get("dataset") or args.dataset for t in args.teachers]))


def missing_data(args: SupArgs) -> list[tuple[str, Path, str]]:
    """(dataset, expected path, fetch command) for every path the experiment reads that is absent under
    ``args.data_dir``; checks paths only (no torchvision import), as :func:`dataset` does before reading."""
    out = []
    for name in experiment_datasets(args):
        if name == "digits":
            continue
        for split in ("train", "test"):
            p = expected_path(name, args.data_dir, split)
            if not p.exists() and p not in [q for _, q, _ in out]:
                out.append((name, p, fetch_command(name, args.data_dir, split)))
    return out


def unavailable(args: SupArgs) -> str | None:
    """None when every dataset the experiment reads lies under data_dir; else the reason it is not run."""
    miss = missing_data(args)
    if not miss:
        return None
    classes = "/".join(dict.fromkeys(TORCHVISION[n].cls for n, _, _ in miss if n not in STREAMED))
    how = [f"torchvision.datasets.{classes}(..., download=True) on a machine with internet access"] if classes else []
    if any(n in STREAMED for n, _, _ in miss):     # ImageNet: no download=True exists
        how.append("the ILSVRC-2012 archives from image-net.org (an account is needed) unpacked by "
                   "torchvision.datasets.ImageNet(..., split='train'/'val')")
    return (f"dataset unavailable (expected {', '.join(str(p) for _, p, _ in miss)}; get it with "
            f"{' and '.join(how)}, exact commands under the tables, and copy it to {args.data_dir})")



TIER_TABLES = {"table3": "Table 3", "table4": "Table 4", "table5": "Table 5", "table6": "Table 6"}


def tier_experiments(config: dict) -> list[str]:
    """The tier's presets, in config order (experiments.table3, table4, table5, table6)."""
    exps = config.get("kf_supervised", {}).get("experiments", {})
    return [e for key in TIER_TABLES for e in exps.get(key, [])]


def tier_args(config: dict, experiment: str, threads: int = 1) -> dict:
    """The --args overrides of one experiment: the tier's args, the experiment's overrides, then data_dir,
    seeds and threads."""
    sup = config["kf_supervised"]
    return {**sup.get("args", {}), **sup.get("overrides", {}).get(experiment, {}),
            "data_dir": sup.get("data_dir", "data/"), "seeds": int(sup["seeds"]), "threads": int(threads)}


def tier_plan(config: dict) -> dict[str, dict]:
    """{experiment: {table, epochs, not_run, missing}} for the tier's presets. not_run is None when every dataset
    the experiment reads lies under data_dir (checked now, without torchvision), else why it is not run; missing
    lists [dataset, expected path, fetch command] of what is absent."""
    out = {}
    for e in tier_experiments(config):
        args = experiment_args(e, tier_args(config, e))
        out[e] = {"table": PAPER_ROWS[e][0], "epochs": args.epochs, "not_run": unavailable(args),
                  "missing": [[n, str(p), cmd] for n, p, cmd in missing_data(args)]}
    return out


def check_tier_config(config: dict) -> None:
    """Errors in the kf_supervised section, named before any job starts."""
    sup = config.get("kf_supervised")
    if sup is None:
        return
    seen = set()
    for key, table in TIER_TABLES.items():
        for e in sup.get("experiments", {}).get(key, []):
            if e not in EXPERIMENTS:
                raise ValueError(f"kf_supervised.experiments.{key}: unknown preset '{e}'; choose one of "
                                 f"{', '.join(EXPERIMENTS)} (papers/knowledge_flow/supervised_presets.yaml)")
            if PAPER_ROWS[e][0] != table:
                right = next(k for k, t in TIER_TABLES.items() if t == PAPER_ROWS[e][0])
                raise ValueError(f"kf_supervised.experiments.{key}: preset '{e}' belongs to {PAPER_ROWS[e][0]}; "
                                 f"list it under experiments.{right}")
            if e in seen:
                raise ValueError(f"kf_supervised.experiments: preset '{e}' is listed twice")
            seen.add(e)
            experiment_args(e, tier_args(config, e))             # unknown or mistyped SupArgs keys are named here
    for key in ("overrides", "resources"):
        extra = sorted(set(sup.get(key, {})) - seen)
        if extra:
            raise ValueError(f"kf_supervised.{key} names {extra}, which kf_supervised.experiments does not list "
                             f"(listed: {sorted(seen)})")
