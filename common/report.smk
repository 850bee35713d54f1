# The generated report: one markdown page per tier linking every table and figure, with the command,
# commit, tier, budgets and machine that produced them. Sections come from each paper's rules.smk
# (REPORT_SECTIONS, declared in the Snakefile).
import json as _json
import shlex as _shlex

REPORT_INPUTS = sorted({p for sec in REPORT_SECTIONS for key in ("tables", "figs", "teachers") for p in sec.get(key, [])})
CLAIMS_FILES = [f"{workflow.basedir}/papers/{p}/claims.yaml" for p in ("knowledge_flow", "hpr_distillation", "cdrl",
                                                                    "gan_simulator")]


def claim_vars():
    """Template variables of the claims files (common/claims.py): the teachers', the run names each paper's rules
    put in CLAIM_VARS (the Snakefile), and a tier's own names (claims.vars, e.g. config/minatar.yaml), last."""
    v = {"teacher_algo": config["teachers"]["algo"], "teacher_seed": config["teachers"].get("seed", 0), **CLAIM_VARS}
    v.update((config.get("claims") or {}).get("vars") or {})
    return " ".join(f"--var {_shlex.quote(f'{k}={val}')}" for k, val in v.items())


rule claims:
    """The claims scorecard: every claim of papers/*/claims.yaml against this tier's per-seed run outputs, with
    effect sizes, 95% stratified bootstrap intervals (>= 5 seeds) and verdicts. Runs after every table (the
    tables need the same runs), so it reads what the tier produced."""
    input:
        claims=CLAIMS_FILES,
        tables=REPORT_INPUTS,
    output:
        md=f"results/{TIER}/claims.md",
        csv=f"results/{TIER}/claims.csv",
    params:
        variables=lambda wc: claim_vars(),
    log:
        f"logs/{TIER}/claims.log",
    benchmark:
        f"benchmarks/{TIER}/claims.tsv"
    threads: 1
    shell:
        "{PY} -m common.claims --tier {TIER} --claims {input.claims} {params.variables}"
        " --out-md {output.md} --out-csv {output.csv} 2> {log}"


rule report:
    input:
        REPORT_INPUTS,
        claims=rules.claims.output.md,
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
        " --sections {params.sections:q} --claims {input.claims} 2> {log}"
