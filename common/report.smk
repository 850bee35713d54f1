# The generated report: one markdown page per tier linking every table and figure, with the command,
# commit, tier, budgets and machine that produced them. Sections come from each paper's rules.smk
# (REPORT_SECTIONS, declared in the Snakefile).
import json as _json

REPORT_INPUTS = sorted({p for sec in REPORT_SECTIONS for key in ("tables", "figs", "teachers") for p in sec.get(key, [])})


rule report:
    input:
        REPORT_INPUTS,
    output:
        f"results/{TIER}/report/index.md",
    log:
        f"logs/{TIER}/report.log",
    benchmark:
        f"benchmarks/{TIER}/report.tsv"
    params:
        config=lambda wc: _json.dumps(config),
        sections=lambda wc: _json.dumps(REPORT_SECTIONS),
    shell:
        "{PY} -m common.build_report --tier {TIER} --out {output} --config {params.config:q}"
        " --sections {params.sections:q} 2> {log}"
