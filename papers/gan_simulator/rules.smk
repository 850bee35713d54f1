# Generative Adversarial Simulator (Raiman 2020): data-free distillation on images (digits offline; MNIST,
# Fashion-MNIST, CIFAR-10 through torchvision), the multiple-input-modes experiment (digits_modes), and
# simulator-free policy distillation from zoo teachers. One job per image preset (teacher, then every method over
# the seeds) and one per policy game. Presets whose dataset is not under gan_simulator.data_dir are not run: that
# is decided when this file loads, and the table shows them as "not run: dataset unavailable (...)".
# Runs live in runs/<tier>/gan_simulator/{<preset>,policy/<game>}/.
import json as _json

from common.zoo import game_from_slug as _gas_game, game_slug as _gas_slug, teacher_dir as _gas_teacher_dir
from papers.gan_simulator import plan as gas_plan
from papers.gan_simulator.images import IMAGE_EXPERIMENTS as GAS_IMAGE_EXPERIMENTS

gas_plan.check_tier_config(config)
GAS = config.get("gan_simulator") or {"seeds": 1, "images": []}
GAS_RUNS = f"runs/{TIER}/gan_simulator"
GAS_PLAN = gas_plan.tier_plan(config)
GAS_RUN = [e for e, p in GAS_PLAN.items() if p["not_run"] is None]
GAS_POLICY = GAS.get("policy") or {}
GAS_GAMES = [_gas_slug(g) for g in GAS_POLICY.get("games", [])]
_GAS_T = GAS_POLICY.get("teacher", {})


def _gas_teacher(game):
    """The tier's zoo teacher of `game` (a name or its slug) that gan_simulator.policy.teacher names (default: the
    seed-0 PPO expert), in the zoo's layout (common.zoo.teacher_dir), as common/teachers.smk builds it."""
    t = {"algo": "ppo", "kind": "expert", "seed": 0, **_GAS_T}
    return str(_gas_teacher_dir(t["algo"], game, t["kind"], t["seed"], tier=TIER))


rule gas_image:
    """One image preset: its teacher (cached), then every method (dafl, dfad, ours, kd_real, kd_noise) over the seeds."""
    output:
        json=f"{GAS_RUNS}/{{experiment}}/results.json",
        csv=f"{GAS_RUNS}/{{experiment}}/results.csv",
    wildcard_constraints:
        experiment="|".join(GAS_IMAGE_EXPERIMENTS),
    params:
        args=lambda wc, threads: _json.dumps(gas_plan.tier_image_args(config, wc.experiment, threads)),
    log:
        f"logs/{TIER}/gan_simulator/{{experiment}}.log",
    benchmark:
        f"benchmarks/{TIER}/gan_simulator/{{experiment}}.tsv"
    threads: config.get("threads_per_run", 1)
    resources:
        mem_mb=8000,
        runtime=GAS.get("runtime_minutes", 240),
    shell:
        "{PY} -m papers.gan_simulator.run --experiment {wildcards.experiment}"
        " --out $(dirname {output.json}) --args {params.args:q} > {log} 2>&1"


rule gas_policy:
    """Simulator-free policy distillation of one zoo teacher: every method over the seeds, plus the teacher,
    a random policy and distillation on real rollouts (the upper bound), scored in the game."""
    input:
        teacher=lambda wc: f"{_gas_teacher(wc.game)}/model.zip",
    output:
        json=f"{GAS_RUNS}/policy/{{game}}/results.json",
        csv=f"{GAS_RUNS}/policy/{{game}}/results.csv",
    params:
        args=lambda wc, threads: _json.dumps(gas_plan.tier_policy_args(
            config, _gas_game(wc.game), _gas_teacher(wc.game), threads)),
    log:
        f"logs/{TIER}/gan_simulator/policy_{{game}}.log",
    benchmark:
        f"benchmarks/{TIER}/gan_simulator/policy_{{game}}.tsv"
    threads: config.get("threads_per_run", 1)
    resources:
        mem_mb=8000,
        runtime=GAS.get("runtime_minutes", 240),
    shell:
        "{PY} -m papers.gan_simulator.run --experiment policy"
        " --out $(dirname {output.json}) --args {params.args:q} > {log} 2>&1"


rule gas_image_table:
    """Published baselines (DAFL, DFAD) vs ours, every method, all-seeds statistics; absent datasets not run."""
    input:
        results=[f"{GAS_RUNS}/{e}/results.json" for e in GAS_RUN],
        reported=f"{workflow.basedir}/papers/gan_simulator/reported.csv",
    output:
        csv=f"results/{TIER}/gan_simulator/images.csv",
        md=f"results/{TIER}/gan_simulator/images.md",
        fig=f"figures/{TIER}/gan_simulator/images.png",
    params:
        plan=_json.dumps(GAS_PLAN),
    log:
        f"logs/{TIER}/gan_simulator/images_table.log",
    benchmark:
        f"benchmarks/{TIER}/gan_simulator/images_table.tsv"
    shell:
        "{PY} -m papers.gan_simulator.tables images --runs {GAS_RUNS} --tier {TIER} --plan {params.plan:q}"
        " --reported {input.reported} --out-csv {output.csv} --out-md {output.md} --out-fig {output.fig} 2> {log}"


rule gas_modes_table:
    """Per-mode student accuracy (DAFL vs ours vs the bounds) for the presets that merge classes."""
    input:
        results=[f"{GAS_RUNS}/{e}/results.json" for e in GAS_RUN],
    output:
        csv=f"results/{TIER}/gan_simulator/modes.csv",
        md=f"results/{TIER}/gan_simulator/modes.md",
        fig=f"figures/{TIER}/gan_simulator/modes.png",
    params:
        plan=_json.dumps(GAS_PLAN),
    log:
        f"logs/{TIER}/gan_simulator/modes_table.log",
    benchmark:
        f"benchmarks/{TIER}/gan_simulator/modes_table.tsv"
    shell:
        "{PY} -m papers.gan_simulator.tables modes --runs {GAS_RUNS} --tier {TIER} --plan {params.plan:q}"
        " --out-csv {output.csv} --out-md {output.md} --out-fig {output.fig} 2> {log}"


rule gas_policy_table:
    """Game scores of the distilled students next to the teacher, random play and the real-rollout upper bound."""
    input:
        results=[f"{GAS_RUNS}/policy/{g}/results.json" for g in GAS_GAMES],
    output:
        csv=f"results/{TIER}/gan_simulator/policy.csv",
        md=f"results/{TIER}/gan_simulator/policy.md",
        fig=f"figures/{TIER}/gan_simulator/policy.png",
    log:
        f"logs/{TIER}/gan_simulator/policy_table.log",
    benchmark:
        f"benchmarks/{TIER}/gan_simulator/policy_table.tsv"
    shell:
        "{PY} -m papers.gan_simulator.tables policy --results {input.results} --tier {TIER}"
        " --out-csv {output.csv} --out-md {output.md} --out-fig {output.fig} 2> {log}"


_gas_not_run = [e for e in GAS_PLAN if e not in GAS_RUN]
REPORT_SECTIONS.append({
    "title": "Generative Adversarial Simulator: data-free and simulator-free distillation (test accuracy %, higher is better)",
    "tables": [rules.gas_image_table.output.md, rules.gas_modes_table.output.md, rules.gas_policy_table.output.md],
    "figs": [rules.gas_image_table.output.fig, rules.gas_modes_table.output.fig, rules.gas_policy_table.output.fig],
    "note": "Only the GAS paper's abstract is public: the method is the project's specification "
            "(papers/gan_simulator/README.md) and the reference numbers are the published DAFL / DFAD baselines at "
            "their full budgets, not the paper's. The digits rows are offline stand-ins; reduced budgets leave the "
            "data-free students far below the real-data bound, and policy distillation from generated frames is an "
            "open problem (as the abstract says): read the policy table against random play and the real-rollout bound."
            + (f" Not run in this tier for want of data: {', '.join(_gas_not_run)} (how to get it: in the table)."
               if _gas_not_run else ""),
    "budget": (f"GAS: {GAS['seeds']} seed(s) per image method; student steps "
               + ", ".join(f"{e} {p['student_steps']}" for e, p in GAS_PLAN.items() if p["not_run"] is None)
               + (f"; policy distillation on {', '.join(GAS_POLICY.get('games', []))}, "
                  f"{GAS_POLICY.get('seeds', 1)} seed(s)" if GAS_GAMES else "")
               if GAS_RUN or GAS_GAMES else "GAS: nothing run in this tier"),
})
