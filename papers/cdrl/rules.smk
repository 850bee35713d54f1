# Collaborative Deep RL / cA3C (Lin, Wang & Zhou 2017): Figs. 3-6 and the last-100-episode table on Pong and
# Bowling. Which runs and schedules: plan.py. Runs live in runs/<tier>/cdrl/<run>/seed<k>/, the experts
# (teachers, offline-alignment data) in runs/<tier>/cdrl/expert_<game>/seed<expert seed>/.
from common.pipeline import eval_protocol, seed_groups
from papers.cdrl import plan as cdrl_plan

CD = config.get("cdrl") or {}  # a tier without a cdrl section (config/recorded/*) leaves cA3C out
if CD:
    cdrl_plan.check(config)  # the cdrl section: schedules and every run's arguments, before any job starts
CD_RUNS = f"runs/{TIER}/cdrl"
CD_SEEDS = range(CD.get("seeds", 0))
CD_EXPERTS = [cdrl_plan.expert_dir(config, TIER, g) for g in (cdrl_plan.SOURCE, cdrl_plan.TARGET)]
CD_ALIGN = cdrl_plan.alignment_dir(TIER)
CLAIM_VARS["cdrl_expert_seed"] = cdrl_plan.expert_dir(config, TIER, cdrl_plan.SOURCE).rsplit("seed", 1)[1]


rule cdrl_expert:
    """A Pong or Bowling expert: an A3C run of papers/cdrl/train.py on the expert budget, evaluated; kind
    'untrained' is the same run's initialisation, saved without an update (the teacher of Fig. 4's control)."""
    output:
        model=f"{CD_RUNS}/{{ekind}}_{{egame}}/seed{{eseed}}/model.pt",
        eval=f"{CD_RUNS}/{{ekind}}_{{egame}}/seed{{eseed}}/eval.json",
    wildcard_constraints:
        ekind="expert|untrained",
        egame="pong|bowling",
        eseed=str(cdrl_plan.expert_seed(config)),  # the seed expert_args trains with
    params:
        args=lambda wc, threads: cdrl_plan.expert_args(config, wc.egame.capitalize(), threads,
                                                       config.get("device", "auto"),
                                                       method="a3c" if wc.ekind == "expert" else "untrained"),
    log:
        f"logs/{TIER}/cdrl/{{ekind}}_{{egame}}_seed{{eseed}}.log",
    benchmark:
        f"benchmarks/{TIER}/cdrl/{{ekind}}_{{egame}}_seed{{eseed}}.tsv"
    threads: config.get("threads_per_run", 1)
    resources:
        mem_mb=4000,
        # minutes, at >= 200 steps/s; the untrained net only plays its evaluation games
        runtime=lambda wc: 30 + (CD["experts"]["steps"] // 12_000 if wc.ekind == "expert" else 30),
    shell:
        "{PY} -m papers.cdrl.train --out $(dirname {output.model}) --args '{params.args}' 2> {log}"


rule cdrl_alignment:
    """Offline deep alignment network (Sec. 5.3) from the two experts' logits on Bowling frames; Fig. 5's data."""
    input:
        source=f"{CD_EXPERTS[0]}/model.pt",
        target=f"{CD_EXPERTS[1]}/model.pt",
    output:
        alignment=f"{CD_ALIGN}/alignment.pt",
        dists=f"{CD_ALIGN}/action_dists.csv",
        fit=f"{CD_ALIGN}/fit.json",
    params:
        args=lambda wc: __import__("json").dumps(CD.get("alignment", {})),
    log:
        f"logs/{TIER}/cdrl/alignment.log",
    benchmark:
        f"benchmarks/{TIER}/cdrl/alignment.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    shell:
        "{PY} -m papers.cdrl.alignment --source {input.source} --target {input.target}"
        " --out $(dirname {output.alignment}) --args '{params.args}' 2> {log}"


def _cdrl_outs(seeds):
    """The run directories of a job training `seeds` (a params function, as papers/knowledge_flow/rules.smk)."""
    return lambda wildcards: " ".join(f"{CD_RUNS}/{wildcards.run}/seed{s}" for s in seeds)


def _cdrl_train_args(seeds):
    """The --args of a job training `seeds` of one run (one seed: a mapping; several: the list the runner takes)."""
    def args(wildcards, threads):
        device = config.get("device", "auto")
        runs = [cdrl_plan.run_args(config, TIER, wildcards.run, s, threads, device) for s in seeds]
        return runs[0] if len(runs) == 1 else "[" + ", ".join(runs) + "]"
    return args


# One job per group of `runs_per_job` seeds (default 1), as papers/knowledge_flow/rules.smk.
for _seeds in seed_groups(int(CD.get("seeds", 0)), config.get("runs_per_job", 1)):
    _name = f"seed{_seeds[0]}" if len(_seeds) == 1 else f"seeds{_seeds[0]}-{_seeds[-1]}"
    rule:
        """One student or baseline run (plan.RUNS) per seed of the group, trained and evaluated; collaborative_bowling
        (Fig. 6d) trains its Pong source beside it (files under source/)."""
        name: f"cdrl_train_{_name}".replace("-", "_")
        input:
            lambda wc: cdrl_plan.teacher_inputs(config, TIER, wc.run),
        output:
            curve=[f"{CD_RUNS}/{{run}}/seed{s}/curve.csv" for s in _seeds],
            model=[f"{CD_RUNS}/{{run}}/seed{s}/model.pt" for s in _seeds],
            eval=[f"{CD_RUNS}/{{run}}/seed{s}/eval.json" for s in _seeds],
        wildcard_constraints:
            run="|".join(cdrl_plan.RUNS),
        params:
            args=_cdrl_train_args(_seeds),
            outs=_cdrl_outs(_seeds),
            batch=(f"--batch {config.get('batch_runs', 'loop')}" + (" --overlap" if config.get("overlap_envs") else "")
                   if len(_seeds) > 1 else ""),
        log:
            f"logs/{TIER}/cdrl/{{run}}_{_name}.log",
        benchmark:
            f"benchmarks/{TIER}/cdrl/{{run}}_{_name}.tsv"
        threads: config.get("threads_per_run", 1)
        resources:
            mem_mb=4000 * len(_seeds),
            # minutes, at >= 200 steps/s per run; the collaborative run steps two learners
            runtime=lambda wc, _n=len(_seeds): 30 + _n * CD["a2c"]["total_steps"] * (
                2 if wc.run == "collaborative_bowling" else 1) // 12_000,
            gpu=int(config.get("device", "auto") == "cuda"),
        shell:
            "{PY} -m papers.cdrl.train --out {params.outs} --args '{params.args}' {params.batch} 2> {log}"


rule cdrl_random_eval:
    """The figures' random-policy rows: uniformly random actions on Pong or Bowling under the students' evaluation
    protocol (cdrl.eval; the observation keys do not matter to a policy that ignores them)."""
    output:
        f"{CD_RUNS}/random_{{egame}}/eval.json",
    wildcard_constraints:
        egame="pong|bowling",
    params:
        game=lambda wc: wc.egame.capitalize(),
        protocol=eval_protocol(CD.get("eval")),
    log:
        f"logs/{TIER}/cdrl/eval_random_{{egame}}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    shell:
        "{PY} -m common.evaluation --policy random --game {params.game}"
        " --seed 0 --out {output} --protocol '{params.protocol}' 2> {log}"


def _cdrl_random_evals(runs):
    """The random-policy eval.json of every game the runs play (their targets; Fig. 6d's Pong source too)."""
    games = dict.fromkeys(cdrl_plan.RUNS[r][0] for r in runs)
    if "collaborative_bowling" in runs:
        games[cdrl_plan.SOURCE] = None
    return [f"{CD_RUNS}/random_{g.lower()}/eval.json" for g in games]


rule cdrl_figure:
    """Fig. 3, 4 or 6a-d: all-seeds curves and a table of last-100 and evaluation scores, with a random-policy row."""
    input:
        evals=lambda wc: [f"{CD_RUNS}/{r}/seed{s}/eval.json" for r in cdrl_plan.FIGURES[wc.fig]["runs"] for s in CD_SEEDS],
        random=lambda wc: _cdrl_random_evals(cdrl_plan.FIGURES[wc.fig]["runs"]),
    output:
        md=f"results/{TIER}/cdrl/{{fig}}.md",
        fig=f"figures/{TIER}/cdrl/{{fig}}_curves.png",
    wildcard_constraints:
        fig="|".join(cdrl_plan.FIGURES),
    log:
        f"logs/{TIER}/cdrl/{{fig}}.log",
    benchmark:
        f"benchmarks/{TIER}/cdrl/{{fig}}.tsv"
    threads: 1
    shell:
        "{PY} -m papers.cdrl.tables figure --fig {wildcards.fig} --runs {CD_RUNS} --tier {TIER}"
        " --random {input.random} --out-md {output.md} --out-fig {output.fig} 2> {log}"


rule cdrl_fig5:
    """Fig. 5: action distributions of the Pong expert, the Bowling expert and the aligned Pong expert."""
    input:
        dists=rules.cdrl_alignment.output.dists,
        fit=rules.cdrl_alignment.output.fit,
    output:
        md=f"results/{TIER}/cdrl/fig5.md",
        fig=f"figures/{TIER}/cdrl/fig5_action_dists.png",
    log:
        f"logs/{TIER}/cdrl/fig5.log",
    benchmark:
        f"benchmarks/{TIER}/cdrl/fig5.tsv"
    threads: 1
    shell:
        "{PY} -m papers.cdrl.tables fig5 --dists {input.dists} --fit {input.fit} --tier {TIER}"
        " --out-md {output.md} --out-fig {output.fig} 2> {log}"


rule cdrl_last100:
    """Sec. 5.4's last-100-episode reward table: paper vs ours (A3C and collaborative cA3C, Fig. 6d)."""
    input:
        evals=[f"{CD_RUNS}/{r}/seed{s}/eval.json" for r in cdrl_plan.FIGURES["fig6"]["runs"] for s in CD_SEEDS],
        experts=[f"{d}/eval.json" for d in CD_EXPERTS],
        random=f"{CD_RUNS}/random_bowling/eval.json",
        reported=f"{workflow.basedir}/papers/cdrl/reported.csv",
    output:
        csv=f"results/{TIER}/cdrl/last100.csv",
        md=f"results/{TIER}/cdrl/last100.md",
    log:
        f"logs/{TIER}/cdrl/last100.log",
    benchmark:
        f"benchmarks/{TIER}/cdrl/last100.tsv"
    threads: 1
    shell:
        "{PY} -m papers.cdrl.tables last100 --runs {CD_RUNS} --tier {TIER} --experts {input.experts}"
        " --random {input.random}"
        " --reported {input.reported} --out-csv {output.csv} --out-md {output.md} 2> {log}"


if CD:
  REPORT_SECTIONS.append({
    "title": "Collaborative Deep RL (cA3C): Figs. 3-6 and the last-100-episode table",
    "tables": [rules.cdrl_last100.output.md, rules.cdrl_fig5.output.md]
              + [f"results/{TIER}/cdrl/{f}.md" for f in cdrl_plan.FIGURES],
    "figs": [f"figures/{TIER}/cdrl/{f}_curves.png" for f in cdrl_plan.FIGURES] + [rules.cdrl_fig5.output.fig],
    "note": "Caveats: a synchronous A2C with 8 envs stands in for the paper's 8 asynchronous A3C agents; teachers "
            "are frozen experts trained by the same runner (Fig. 3a's teacher was still learning in the paper), except "
            "in Fig. 6d (collaborative), where Pong and Bowling learn from scratch in lock-step and the Bowling "
            "target distils from the live Pong learner. Protocol: ale-py Pong/Bowling, frameskip 4, no sticky actions, up to 30 no-ops, one "
            "42x42 frame cropped as the official code (papers/cdrl/README.md).",
    "budget": f"cA3C: {CD['a2c']['total_steps']:,} env steps per run (paper: 20M), experts "
              f"{CD['experts']['steps']:,}, {CD['seeds']} seeds",
    # no "teachers": the report's teacher table is for SB3 zoo teachers; the experts' scores are in last100.md
})
