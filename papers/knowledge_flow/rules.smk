# Knowledge Flow (Liu, Peng, Schwing, ICLR 2019), reinforcement learning: Table 2 (ours w/ expert, ours w/
# non-expert, fine-tuning, the A3C baseline) with Fig. 3/6 curves, the normalised weights p_w over training
# (Fig. 1c/7) and how far each student ends from independence. Which runs and teachers: plan.py.
# Runs live in runs/<tier>/knowledge_flow/<method>/<game>/seed<k>/.
from common.pipeline import eval_protocol
from papers.knowledge_flow import plan as kf_plan

KF = config["knowledge_flow"]
KF_RUNS = f"runs/{TIER}/knowledge_flow"
KF_SEEDS = range(KF["seeds"])
KF_CELLS = kf_plan.runs(config)
TABLE2_METHODS = ["baseline"] + (list(kf_plan.TABLE2) if KF.get("table2") else [])
KF_EXPERIMENTS = list(kf_plan.experiments(config))


rule kf_train:
    """One run: the A3C baseline (no teachers), Knowledge Flow with two teachers, or fine-tuning."""
    input:
        teachers=lambda wc: [f"{d}/model.zip" for d in kf_plan.teacher_dirs(config, TIER, wc.method, wc.game)],
    output:
        curve=f"{KF_RUNS}/{{method}}/{{game}}/seed{{seed}}/curve.csv",
        model=f"{KF_RUNS}/{{method}}/{{game}}/seed{{seed}}/model.pt",
        stats=f"{KF_RUNS}/{{method}}/{{game}}/seed{{seed}}/train_stats.csv",
    wildcard_constraints:
        method="baseline|finetune|kf_[a-z0-9_]+",
    params:
        args=lambda wc, threads: kf_plan.run_args(config, TIER, wc.method, wc.game, wc.seed, threads,
                                                  config.get("device", "auto")),
    log:
        f"logs/{TIER}/knowledge_flow/{{method}}_{{game}}_seed{{seed}}.log",
    benchmark:
        f"benchmarks/{TIER}/knowledge_flow/{{method}}_{{game}}_seed{{seed}}.tsv"
    threads: config.get("threads_per_run", 1)
    resources:
        mem_mb=4000,
        runtime=lambda wc: 30 + KF["a2c"]["total_steps"] // 20_000,  # minutes, at >= 350 steps/s
    shell:
        "{PY} -m papers.knowledge_flow.train --out $(dirname {output.curve}) --args '{params.args}' 2> {log}"


rule kf_eval:
    """The student alone, 30 games, up to 30 no-ops (Mnih et al. 2015), raw game score."""
    input:
        model=f"{KF_RUNS}/{{method}}/{{game}}/seed{{seed}}/model.pt",
    output:
        f"{KF_RUNS}/{{method}}/{{game}}/seed{{seed}}/eval.json",
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


rule kf_table2:
    """Table 2 paper vs ours (top-k of N and all-seeds IQM [95% CI]), Fig. 3/6 curves, p_w over training,
    and the students' remaining teacher dependence at the end."""
    input:
        evals=[f"{KF_RUNS}/{m}/{g}/seed{s}/eval.json" for m in TABLE2_METHODS
               for g in (KF["games"] if m == "baseline" else KF.get("table2", {})) for s in KF_SEEDS],
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
    log:
        f"logs/{TIER}/knowledge_flow/table2.log",
    benchmark:
        f"benchmarks/{TIER}/knowledge_flow/table2.tsv"
    threads: 1
    shell:
        "{PY} -m papers.knowledge_flow.tables table2 --runs {KF_RUNS} --methods {params.methods} --tier {TIER}"
        " --top-k {params.top_k} --reported {input.reported} --out-csv {output.csv} --out-md {output.md}"
        " --out-independence {output.independence} --out-fig {output.fig} --out-pw-fig {output.pw_fig} 2> {log}"


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
    "note": "Caveats: a synchronous A2C with 16 envs stands in for the paper's 16 asynchronous A3C workers, and "
            "PPO-trained teachers for the authors' A3C teachers; scores far below the paper's at reduced budgets "
            "are a statement about budget. Whether Knowledge Flow beats the baseline and fine-tuning *at this "
            "budget* is what the table shows, read with its intervals.",
    "budget": f"Knowledge Flow: {KF['a2c']['total_steps']:,} env steps per run (paper: 40M), {KF['seeds']} seeds, "
              f"top {KF['top_k']}",
    "teachers": [f"{kf_plan.teacher_dir(config, TIER, g, k, a)}/eval.json" for g, k, a in kf_plan.all_teachers(config)],
})


KF_TABLE7_REASON = ("Distral (Teh et al. 2017; KL + ent 1 col) is not implemented: it trains three task policies "
                    "together with a shared distilled policy, a multi-task learner the shared single-task A2C does "
                    "not provide (issue 3)")


rule kf_table7:
    """Table 7 (Knowledge Flow vs Distral on three task triples): paper numbers only, shown as not run."""
    input:
        reported=f"{workflow.basedir}/papers/knowledge_flow/reported.csv",
    output:
        csv=f"results/{TIER}/knowledge_flow/table7.csv",
        md=f"results/{TIER}/knowledge_flow/table7.md",
    params:
        reason=KF_TABLE7_REASON,
    log:
        f"logs/{TIER}/knowledge_flow/table7.log",
    threads: 1
    shell:
        "{PY} -m papers.knowledge_flow.tables not_run --table 'Table 7' --reason {params.reason:q} --tier {TIER}"
        " --reported {input.reported} --out-csv {output.csv} --out-md {output.md} 2> {log}"


REPORT_SECTIONS.append({
    "title": "Knowledge Flow: Table 7 (vs Distral on task triples): not run",
    "tables": [rules.kf_table7.output.md],
    "figs": [],
    "note": "The paper's numbers are listed so the gap is visible; nothing of ours is compared with them.",
})
