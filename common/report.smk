# The generated report: one markdown page per tier linking every table and figure, with the command,
# commit, tier, budgets and machine that produced them.


rule report:
    input:
        kf_table2=rules.kf_table2.output.md,
        kf_independence=rules.kf_table2.output.independence,
        kf_fig=rules.kf_table2.output.fig,
        kf_pw_fig=rules.kf_table2.output.pw_fig,
        teachers=[f"{kf_plan.teacher_dir(config, TIER, g)}/eval.json" for g in kf_plan.all_teacher_games(config)],
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
        " --kf-table2 {input.kf_table2} --kf-independence {input.kf_independence} --kf-figs {input.kf_fig}"
        " {input.kf_pw_fig} --teachers {input.teachers} 2> {log}"
