"""The pipeline's plan for GAS (config section ``gan_simulator``), pure functions of the config decided when the
Snakefile loads and read by papers/gan_simulator/rules.smk (and tested without Snakemake): the --args of each
image preset (:func:`tier_image_args`) and policy game (:func:`tier_policy_args`), which image presets can run
(:func:`tier_plan`: a torchvision preset without its data under data_dir is not run) and the section's errors,
named before any job starts (:func:`check_tier_config`).
"""

from __future__ import annotations

from papers.gan_simulator.harness import method_args
from papers.gan_simulator.images import experiment_args, missing_dataset
from papers.gan_simulator.policy import PolicyArgs


def tier_image_args(config: dict, experiment: str, threads: int = 1) -> dict:
    """The --args overrides of one image preset: the tier's args, its gas, the preset's overrides (seeds included:
    they win over the tier's gan_simulator.seeds), then data_dir, threads and device."""
    g = config["gan_simulator"]
    over = dict(g.get("overrides", {}).get(experiment, {}))
    gas = {**g.get("gas", {}), **over.pop("gas", {})}
    seeds = int(over.pop("seeds", g["seeds"]))  # a preset may run more or fewer seeds than the tier's
    return {**g.get("args", {}), **over, "gas": gas, "data_dir": g.get("data_dir", "data/"),
            "seeds": seeds, "threads": int(threads), "device": config.get("device", "cpu")}


def tier_plan(config: dict) -> dict[str, dict]:
    """{preset: {student_steps, seeds, not_run}} for the tier's image presets; not_run is None when it can run."""
    g = config.get("gan_simulator") or {}
    out = {}
    for e in g.get("images", []):
        a = experiment_args(e, tier_image_args(config, e))
        steps = method_args(a.methods[0], 0, a.gas, a.method_overrides).student_steps
        out[e] = {"dataset": a.dataset, "student_steps": steps, "seeds": a.seeds,
                  "not_run": missing_dataset(a.dataset, a.data_dir)}
    return out


def tier_policy_args(config: dict, game: str, teacher: str, threads: int = 1) -> dict:
    p = config["gan_simulator"]["policy"]
    return {**p.get("args", {}), "gas": dict(p.get("gas", {})), "game": game, "teacher": teacher,
            "seeds": int(p.get("seeds", 1)), "threads": int(threads), "device": config.get("device", "cpu")}


def check_tier_config(config: dict) -> None:
    """Errors in the gan_simulator section, named before any job starts."""
    g = config.get("gan_simulator")
    if g is None:
        return
    for e in g.get("images", []):
        experiment_args(e, tier_image_args(config, e))
    extra = sorted(set(g.get("overrides", {})) - set(g.get("images", [])))
    if extra:
        raise ValueError(f"gan_simulator.overrides names {extra}, which gan_simulator.images does not list")
    if g.get("policy"):
        for game in g["policy"].get("games", []):
            PolicyArgs.from_dict(tier_policy_args(config, game, "teachers/<checked at run time>"))
