# The generated report: one markdown page per tier linking every table and figure, with the command,
# commit, tier, budgets and machine that produced them.


rule report:
    input:
        kf_table2=rules.kf_table2_baseline.output.md,
        kf_fig=rules.kf_table2_baseline.output.fig,
        teachers=expand("teachers/{tier}/{algo}/{game}/expert/seed{seed}/eval.json", tier=TIER,
                        algo=config["teachers"]["algo"], game=config["knowledge_flow"].get("teacher_games", []),
                        seed=config["teachers"].get("seed", 0)),
    output:
        f"results/{TIER}/report/index.md",
    log:
        f"logs/{TIER}/report.log",
    benchmark:
        f"benchmarks/{TIER}/report.tsv"
    params:
        config=lambda wc: __import__("json").dumps(config),
    shell:
        "{PY} -m common.build_report --tier {TIER} --out {output} --config '{params.config}'"
        " --kf-table2 {input.kf_table2} --kf-fig {input.kf_fig} --teachers {input.teachers} 2> {log}"
