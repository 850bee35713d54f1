# Knowledge Flow (Liu, Peng, Schwing, ICLR 2019). So far: the "A3C baseline" column of Table 2, the
# foundation's end-to-end experiment. Runs live in runs/<tier>/knowledge_flow/<config>/<game>/seed<k>/.
from common.pipeline import a2c_args, eval_protocol

KF = config["knowledge_flow"]
KF_RUNS = f"runs/{TIER}/knowledge_flow"
KF_SEEDS = range(KF["seeds"])


rule kf_baseline_train:
    """The A3C baseline: the shared A2C learner, A3C net, no teachers."""
    output:
        curve=f"{KF_RUNS}/baseline/{{game}}/seed{{seed}}/curve.csv",
        model=f"{KF_RUNS}/baseline/{{game}}/seed{{seed}}/model.pt",
        stats=f"{KF_RUNS}/baseline/{{game}}/seed{{seed}}/train_stats.csv",
    params:
        args=lambda wc, threads: a2c_args(KF["a2c"], wc.game, wc.seed, threads, config.get("device", "auto")),
    log:
        f"logs/{TIER}/knowledge_flow/baseline_{{game}}_seed{{seed}}.log",
    benchmark:
        f"benchmarks/{TIER}/knowledge_flow/baseline_{{game}}_seed{{seed}}.tsv"
    threads: config.get("threads_per_run", 1)
    resources:
        mem_mb=3000,
        runtime=lambda wc: 30 + KF["a2c"]["total_steps"] // 30_000,  # minutes, at >= 500 steps/s
    shell:
        "{PY} -m common.a2c --out $(dirname {output.curve}) --args '{params.args}' 2> {log}"


rule kf_eval:
    """The student alone, 30 games, up to 30 no-ops (Mnih et al. 2015), raw game score."""
    input:
        model=f"{KF_RUNS}/{{config}}/{{game}}/seed{{seed}}/model.pt",
    output:
        f"{KF_RUNS}/{{config}}/{{game}}/seed{{seed}}/eval.json",
    params:
        protocol=eval_protocol(KF.get("eval")),
    log:
        f"logs/{TIER}/knowledge_flow/eval_{{config}}_{{game}}_seed{{seed}}.log",
    benchmark:
        f"benchmarks/{TIER}/knowledge_flow/eval_{{config}}_{{game}}_seed{{seed}}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    shell:
        "{PY} -m common.evaluation --policy {input.model} --game {wildcards.game}"
        " --seed {wildcards.seed} --out {output} --protocol '{params.protocol}' 2> {log}"


rule kf_table2_baseline:
    """Table 2, A3C-baseline and A3C columns: paper vs ours (top-k of N and all-seeds IQM [95% CI])."""
    input:
        evals=expand(f"{KF_RUNS}/baseline/{{game}}/seed{{seed}}/eval.json", game=KF["games"], seed=KF_SEEDS),
        curves=expand(f"{KF_RUNS}/baseline/{{game}}/seed{{seed}}/curve.csv", game=KF["games"], seed=KF_SEEDS),
        reported=f"{workflow.basedir}/papers/knowledge_flow/reported.csv",
    output:
        csv=f"results/{TIER}/knowledge_flow/table2_baseline.csv",
        md=f"results/{TIER}/knowledge_flow/table2_baseline.md",
        fig=f"figures/{TIER}/knowledge_flow/baseline_curves.png",
    params:
        top_k=KF["top_k"],
    log:
        f"logs/{TIER}/knowledge_flow/table2_baseline.log",
    benchmark:
        f"benchmarks/{TIER}/knowledge_flow/table2_baseline.tsv"
    threads: 1
    shell:
        "{PY} -m papers.knowledge_flow.tables baseline --runs {KF_RUNS}/baseline --tier {TIER}"
        " --top-k {params.top_k} --reported {input.reported} --out-csv {output.csv} --out-md {output.md}"
        " --out-fig {output.fig} 2> {log}"

