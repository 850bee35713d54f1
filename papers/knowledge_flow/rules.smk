# Knowledge Flow (Liu, Peng, Schwing, ICLR 2019), reinforcement learning: Table 2 (ours w/ expert, ours w/
# non-expert, fine-tuning, the A3C baseline) with Fig. 3/6 curves, the normalised weights p_w over training
# (Fig. 1c/7) and how far each student ends from independence; Table 1 and the ablations; Table 7 (vs Distral).
# Which runs and teachers: plan.py. Runs live in runs/<tier>/knowledge_flow/<method>/<game>/seed<k>/, Distral's
# in runs/<tier>/knowledge_flow/distral/<Task1+Task2+Task3>/seed<k>/.
from common.pipeline import eval_protocol, seed_groups
from papers.knowledge_flow import plan as kf_plan

kf_plan.check(config)  # the knowledge_flow section: arguments by name, runs and games, before any job starts
KF = config["knowledge_flow"]
KF_RUNS = f"runs/{TIER}/knowledge_flow"
KF_SEEDS = range(KF["seeds"])
KF_CELLS = kf_plan.runs(config)
TABLE2_METHODS = ["baseline"] + (kf_plan.table2_methods(config) if KF.get("table2") else [])
KF_EXPERIMENTS = list(kf_plan.experiments(config))


def _kf_outs(seeds):
    """The run directories of a job training `seeds` (a params function: directives evaluated when a job runs must
    not read the loop variable below, which by then holds the last group of the last loop)."""
    return lambda wildcards: " ".join(f"{KF_RUNS}/{wildcards.method}/{wildcards.game}/seed{s}" for s in seeds)


def _kf_train_args(seeds):
    """The --args of a job training `seeds` (one run: a mapping; several: the list the multi-run form takes)."""
    def args(wildcards, threads):
        device = config.get("device", "auto")
        runs = [kf_plan.run_args(config, TIER, wildcards.method, wildcards.game, s, threads, device) for s in seeds]
        return runs[0] if len(runs) == 1 else "[" + ", ".join(runs) + "]"
    return args


# One job per group of `runs_per_job` seeds (default 1: one job per seed). A group trains its seeds in one process
# with the multi-run learner; each seed's outputs are what it would write alone (bit for bit on the CPU).
KF_MAX_SEEDS = max([s + 1 for _, _, s in kf_plan.run_seeds(config)] + [int(KF["seeds"])])
for _seeds in seed_groups(KF_MAX_SEEDS, config.get("runs_per_job", 1)):
    _name = f"seed{_seeds[0]}" if len(_seeds) == 1 else f"seeds{_seeds[0]}-{_seeds[-1]}"
    rule:
        """Runs of one cell: the A3C baseline (no teachers), Knowledge Flow with two teachers, or fine-tuning."""
        name: f"kf_train_{_name}".replace("-", "_")
        input:
            teachers=lambda wc: [f"{d}/model.zip" for d in kf_plan.teacher_dirs(config, TIER, wc.method, wc.game)],
        output:
            curve=[f"{KF_RUNS}/{{method}}/{{game}}/seed{s}/curve.csv" for s in _seeds],
            model=[f"{KF_RUNS}/{{method}}/{{game}}/seed{s}/model.pt" for s in _seeds],
            stats=[f"{KF_RUNS}/{{method}}/{{game}}/seed{s}/train_stats.csv" for s in _seeds],
        wildcard_constraints:
            method="baseline|finetune|kf_[a-z0-9_]+",
        params:
            args=_kf_train_args(_seeds),
            outs=_kf_outs(_seeds),
            batch=(f"--batch {config.get('batch_runs', 'loop')}" + (" --overlap" if config.get("overlap_envs") else "")
                   if len(_seeds) > 1 else ""),
        log:
            f"logs/{TIER}/knowledge_flow/{{method}}_{{game}}_{_name}.log",
        benchmark:
            f"benchmarks/{TIER}/knowledge_flow/{{method}}_{{game}}_{_name}.tsv"
        threads: config.get("threads_per_run", 1)
        resources:
            mem_mb=4000 * len(_seeds),
            runtime=30 + len(_seeds) * KF["a2c"]["total_steps"] // 20_000,  # minutes, at >= 350 steps/s per run
            gpu=int(config.get("device", "auto") == "cuda"),
        shell:
            "{PY} -m papers.knowledge_flow.train --out {params.outs} --args '{params.args}' {params.batch} 2> {log}"


rule kf_eval:
    """The student alone, 30 games, up to 30 no-ops (Mnih et al. 2015), raw game score."""
    input:
        model=f"{KF_RUNS}/{{method}}/{{game}}/seed{{seed}}/model.pt",
    output:
        f"{KF_RUNS}/{{method}}/{{game}}/seed{{seed}}/eval.json",
    wildcard_constraints:
        method="baseline|finetune|kf_[a-z0-9_]+",  # not distral: its runner evaluates m1 itself
    params:
        protocol=eval_protocol(KF.get("eval")),
    log:
        f"logs/{TIER}/knowledge_flow/eval_{{method}}_{{game}}_seed{{seed}}.log",
    benchmark:
        f"benchmarks/{TIER}/knowledge_flow/eval_{{method}}_{{game}}_seed{{seed}}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    shell:
        "{PY} -m common.evaluation --policy {input.model} --game {wildcards.game}"
        " --seed {wildcards.seed} --out {output} --protocol '{params.protocol}' 2> {log}"


rule kf_random_eval:
    """Every table's random-policy row: uniformly random actions under the students' evaluation protocol."""
    output:
        f"{KF_RUNS}/random/{{game}}/eval.json",
    wildcard_constraints:
        game="[A-Za-z0-9]+|MinAtar/[A-Za-z]+",
    params:
        protocol=eval_protocol(KF.get("eval")),
    log:
        f"logs/{TIER}/knowledge_flow/eval_random_{{game}}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    shell:
        "{PY} -m common.evaluation --policy random --game {wildcards.game}"
        " --seed 0 --out {output} --protocol '{params.protocol}' 2> {log}"


# Table 2's reference rows: the random policy on every game, and each game's own expert where a table2 entry trains it,
# both scored under the students' evaluation protocol (the zoo's own eval.json uses the teacher's training protocol)
KF_T2_GAMES = list(dict.fromkeys(list(KF["games"]) + list(KF.get("table2", {}))))
KF_T2_EXPERTS = {g: kf_plan.teacher_dir(config, TIER, g, "expert", config["teachers"]["algo"])
                 for g in KF_T2_GAMES if (g, "expert", config["teachers"]["algo"]) in kf_plan.all_teachers(config)}
KF_T2_TEACHERS = {g: f"{KF_RUNS}/teachers/{g}/eval.json" for g in KF_T2_EXPERTS}


rule kf_teacher_eval:
    """A game's own expert teacher played as the students are (Table 2's teacher row, the claims' expert check)."""
    input:
        model=lambda wc: f"{KF_T2_EXPERTS[wc.game]}/model.zip",
    output:
        f"{KF_RUNS}/teachers/{{game}}/eval.json",
    wildcard_constraints:
        game="[A-Za-z0-9]+|MinAtar/[A-Za-z]+",
    params:
        teacher=lambda wc: KF_T2_EXPERTS[wc.game],
        protocol=eval_protocol(KF.get("eval")),
    log:
        f"logs/{TIER}/knowledge_flow/eval_teacher_{{game}}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    shell:
        "{PY} -m common.evaluation --policy {params.teacher} --game {wildcards.game}"
        " --seed 0 --out {output} --protocol '{params.protocol}' 2> {log}"


rule kf_table2:
    """Table 2 paper vs ours (top-k of N and all-seeds IQM [95% CI]), Fig. 3/6 curves, p_w over training,
    and the students' remaining teacher dependence at the end."""
    input:
        evals=[f"{KF_RUNS}/{m}/{g}/seed{s}/eval.json" for m in TABLE2_METHODS
               for g in (KF["games"] if m == "baseline" else KF.get("table2", {})) for s in KF_SEEDS],
        random=[f"{KF_RUNS}/random/{g}/eval.json" for g in KF_T2_GAMES],
        teachers=list(KF_T2_TEACHERS.values()),
        reported=f"{workflow.basedir}/papers/knowledge_flow/reported.csv",
    output:
        csv=f"results/{TIER}/knowledge_flow/table2.csv",
        md=f"results/{TIER}/knowledge_flow/table2.md",
        independence=f"results/{TIER}/knowledge_flow/independence.md",
        fig=f"figures/{TIER}/knowledge_flow/table2_curves.png",
        pw_fig=f"figures/{TIER}/knowledge_flow/pw_over_training.png",
    params:
        top_k=KF["top_k"],
        methods=" ".join(TABLE2_METHODS),
        teachers=" ".join(f"{g}={f}" for g, f in KF_T2_TEACHERS.items()),
    log:
        f"logs/{TIER}/knowledge_flow/table2.log",
    benchmark:
        f"benchmarks/{TIER}/knowledge_flow/table2.tsv"
    threads: 1
    shell:
        "{PY} -m papers.knowledge_flow.tables table2 --runs {KF_RUNS} --methods {params.methods} --tier {TIER}"
        " --top-k {params.top_k} --reported {input.reported} --random {input.random} --teachers {params.teachers}"
        " --out-csv {output.csv} --out-md {output.md} --out-independence {output.independence} --out-fig {output.fig} --out-pw-fig {output.pw_fig} 2> {log}"


rule kf_experiment:
    """Table 1 or an ablation figure (Figs. 8-11): paper vs ours where the paper gives numbers, curves, p_w."""
    input:
        evals=lambda wc: [f"{KF_RUNS}/{m}/{g}/seed{s}/eval.json"
                          for m, g, n in kf_plan.experiment_cells(config, wc.exp) for s in range(n)],
        reported=f"{workflow.basedir}/papers/knowledge_flow/reported.csv",
    output:
        csv=f"results/{TIER}/knowledge_flow/{{exp}}.csv",
        md=f"results/{TIER}/knowledge_flow/{{exp}}.md",
        fig=f"figures/{TIER}/knowledge_flow/{{exp}}_curves.png",
    wildcard_constraints:
        exp="|".join(KF_EXPERIMENTS) or "no_experiments",
    params:
        spec=lambda wc: __import__("json").dumps(kf_plan.experiments(config)[wc.exp]),
        top_k=KF["top_k"],
    log:
        f"logs/{TIER}/knowledge_flow/{{exp}}.log",
    benchmark:
        f"benchmarks/{TIER}/knowledge_flow/{{exp}}.tsv"
    threads: 1
    shell:
        "{PY} -m papers.knowledge_flow.tables experiment --name {wildcards.exp} --spec {params.spec:q} --runs {KF_RUNS}"
        " --tier {TIER} --top-k {params.top_k} --reported {input.reported} --out-csv {output.csv} --out-md {output.md}"
        " --out-fig {output.fig} 2> {log}"


for _exp in KF_EXPERIMENTS:
    REPORT_SECTIONS.append({
        "title": f"Knowledge Flow: {KF['experiments'][_exp].get('paper_table', _exp)} ({_exp})",
        "tables": [f"results/{TIER}/knowledge_flow/{_exp}.md"],
        "figs": [f"figures/{TIER}/knowledge_flow/{_exp}_curves.png"],
        "note": KF["experiments"][_exp].get("note", ""),
        "teachers": [f"{d}/eval.json" for m, g, _ in kf_plan.experiment_cells(config, _exp)
                     for d in kf_plan.teacher_dirs(config, TIER, m, g)],
    })

REPORT_SECTIONS.insert(0, {
    "title": "Knowledge Flow: Table 2 (expert / non-expert teachers, fine-tuning, A3C baseline)",
    "tables": [rules.kf_table2.output.md, rules.kf_table2.output.independence],
    "figs": [rules.kf_table2.output.fig, rules.kf_table2.output.pw_fig],
    "note": f"Caveats: a synchronous A2C with {KF['a2c'].get('num_envs', 16)} envs stands in for the paper's 16 "
            f"asynchronous A3C workers, and SB3 {config['teachers']['algo'].upper()} teachers for the authors' A3C "
            "teachers; scores far below the paper's at reduced budgets "
            "are a statement about budget. Whether Knowledge Flow beats the baseline and fine-tuning *at this "
            "budget* is what the table shows, read with its intervals.",
    "budget": f"Knowledge Flow: {KF['a2c']['total_steps']:,} env steps per run (paper: 40M), {KF['seeds']} seeds, "
              f"top {KF['top_k']}",
    "teachers": [f"{kf_plan.teacher_dir(config, TIER, g, k, a)}/eval.json" for g, k, a in kf_plan.all_teachers(config)],
})


KF_T7 = kf_plan.table7(config)
KF_T7_TRIPLES = kf_plan.table7_triples(config)
for _t in KF_T7_TRIPLES:  # the claims' names of Table 7's runs (papers/knowledge_flow/claims.yaml)
    CLAIM_VARS[f"kf_t7_kf_{_t[0].replace('/', '-')}"] = kf_plan.table7_kf_method(_t)
    CLAIM_VARS[f"kf_t7_distral_{_t[0].replace('/', '-')}"] = kf_plan.triple_name(_t)
KF_T7_SEEDS = range(kf_plan.table7_seeds(config))


rule kf_distral:
    """One Distral run (KL + ent 1col): the triple's task learners and pi_0 in lock-step, a2c.total_steps per task;
    then task 1's policy m1 (and pi_0, m0) evaluated on task 1 with the Knowledge Flow protocol."""
    output:
        curve=f"{KF_RUNS}/distral/{{triple}}/seed{{seed}}/curve.csv",
        model=f"{KF_RUNS}/distral/{{triple}}/seed{{seed}}/model.pt",
        eval=f"{KF_RUNS}/distral/{{triple}}/seed{{seed}}/eval.json",
    wildcard_constraints:
        triple=r"[A-Za-z0-9]+(\+[A-Za-z0-9]+)+",
        seed=r"\d+",
    params:
        args=lambda wc, threads: kf_plan.distral_args(config, wc.triple, wc.seed, threads,
                                                      config.get("device", "auto")),
    log:
        f"logs/{TIER}/knowledge_flow/distral_{{triple}}_seed{{seed}}.log",
    benchmark:
        f"benchmarks/{TIER}/knowledge_flow/distral_{{triple}}_seed{{seed}}.tsv"
    threads: config.get("threads_per_run", 1)
    resources:
        mem_mb=6000,
        # minutes: three task learners + pi_0 cost ~3.5 single runs (kf_train's estimate: >= 350 steps/s)
        runtime=lambda wc: 60 + 7 * KF["a2c"]["total_steps"] // 40_000,
    shell:
        "{PY} -m papers.knowledge_flow.distral --out $(dirname {output.curve}) --args '{params.args}' 2> {log}"


if KF_T7:

    rule kf_table7:
        """Table 7: Distral's task-1 policy m1 vs Knowledge Flow on task 1 with the task-2 and task-3 experts as
        teachers, per triple (top-k of N and all-seeds IQM [95% CI]), with task-1 training curves."""
        input:
            distral=[f"{KF_RUNS}/distral/{kf_plan.triple_name(t)}/seed{s}/eval.json" for t in KF_T7_TRIPLES
                     for s in KF_T7_SEEDS],
            ours=[f"{KF_RUNS}/{kf_plan.table7_kf_method(t)}/{t[0]}/seed{s}/eval.json" for t in KF_T7_TRIPLES
                  for s in KF_T7_SEEDS],
            reported=f"{workflow.basedir}/papers/knowledge_flow/reported.csv",
        output:
            csv=f"results/{TIER}/knowledge_flow/table7.csv",
            md=f"results/{TIER}/knowledge_flow/table7.md",
            fig=f"figures/{TIER}/knowledge_flow/table7_curves.png",
        params:
            spec=__import__("json").dumps({"triples": KF_T7_TRIPLES, "seeds": len(KF_T7_SEEDS),
                                           "total_steps": KF["a2c"]["total_steps"],
                                           "distral": KF_T7.get("distral", {})}),
            top_k=KF["top_k"],
        log:
            f"logs/{TIER}/knowledge_flow/table7.log",
        benchmark:
            f"benchmarks/{TIER}/knowledge_flow/table7.tsv"
        threads: 1
        shell:
            "{PY} -m papers.knowledge_flow.tables table7 --spec {params.spec:q} --runs {KF_RUNS} --tier {TIER}"
            " --top-k {params.top_k} --reported {input.reported} --out-csv {output.csv} --out-md {output.md}"
            " --out-fig {output.fig} 2> {log}"

    REPORT_SECTIONS.append({
        "title": "Knowledge Flow: Table 7 (vs Distral on task triples)",
        "tables": [rules.kf_table7.output.md],
        "figs": [rules.kf_table7.output.fig],
        "note": "Distral (KL + ent 1col) is our implementation (papers/knowledge_flow/distral.py): alpha and beta are "
                "our choices (the Knowledge Flow paper gives none), every Distral task plays the full 18-action set, "
                "and its task learners are the same synchronous A2C as every other run. The Knowledge Flow column is "
                "the run kf_<task2>_<task3> on task 1 (shared with Table 1 / Fig. 8 where they name it).",
        "budget": f"Table 7: {KF['a2c']['total_steps']:,} env steps per task for Distral (x{len(KF_T7_TRIPLES[0])} "
                  f"tasks) and for Knowledge Flow (paper: 40M each), {len(KF_T7_SEEDS)} seeds, top {KF['top_k']}",
        "teachers": [f"{d}/eval.json" for t in KF_T7_TRIPLES
                     for d in kf_plan.teacher_dirs(config, TIER, kf_plan.table7_kf_method(t), t[0])],
    })

else:

    rule kf_table7:
        """Table 7 in a tier without knowledge_flow.table7: the paper's numbers, shown as not run in this tier."""
        input:
            reported=f"{workflow.basedir}/papers/knowledge_flow/reported.csv",
        output:
            csv=f"results/{TIER}/knowledge_flow/table7.csv",
            md=f"results/{TIER}/knowledge_flow/table7.md",
        params:
            reason="not in this tier (add knowledge_flow.table7 to its config: papers/knowledge_flow/plan.py)",
        log:
            f"logs/{TIER}/knowledge_flow/table7.log",
        threads: 1
        shell:
            "{PY} -m papers.knowledge_flow.tables not_run --table 'Table 7' --reason {params.reason:q} --tier {TIER}"
            " --reported {input.reported} --out-csv {output.csv} --out-md {output.md} 2> {log}"

    REPORT_SECTIONS.append({
        "title": "Knowledge Flow: Table 7 (vs Distral on task triples): not in this tier",
        "tables": [rules.kf_table7.output.md],
        "figs": [],
        "note": "The paper's numbers are listed; this tier's config has no knowledge_flow.table7 block.",
    })
