# Knowledge Flow (Liu, Peng, Schwing, ICLR 2019), supervised learning: Tables 3-6 (test error %), one job per
# preset of papers/knowledge_flow/supervised.py (teachers, then every method with its lambdas chosen on
# validation, then the seeds). Presets whose datasets are not under kf_supervised.data_dir are not run: that
# is decided when this file loads, and the tables show those rows as "not run: dataset unavailable (...)".
# Runs live in runs/<tier>/knowledge_flow_supervised/<experiment>/ (results.json, results.csv, pw.csv: p_w of every
# candidate per student layer and epoch of each Knowledge Flow run, drawn as figures/<tier>/knowledge_flow/
# supervised_pw.png, the paper's Fig. 7 for the cifar10 preset; curves.csv: test accuracy per epoch of every run,
# drawn as figures/<tier>/knowledge_flow/supervised_curves.png, the paper's Figs. 4 and 5 for emnist_letters, stl10).
import json as _json

from papers.knowledge_flow import supervised as kf_sup

kf_sup.check_tier_config(config)
KFS = config.get("kf_supervised") or {"seeds": 1, "experiments": {}}  # a tier without it: every row 'not run'
KFS_RUNS = f"runs/{TIER}/knowledge_flow_supervised"
KFS_PLAN = kf_sup.tier_plan(config)
KFS_RUN = [e for e, p in KFS_PLAN.items() if p["not_run"] is None]


rule kf_supervised:
    """One preset: its teachers, then every method (baseline, fine-tune, KD, Knowledge Flow) over the seeds."""
    output:
        json=f"{KFS_RUNS}/{{experiment}}/results.json",
        csv=f"{KFS_RUNS}/{{experiment}}/results.csv",
        pw=f"{KFS_RUNS}/{{experiment}}/pw.csv",
        curves=f"{KFS_RUNS}/{{experiment}}/curves.csv",
    wildcard_constraints:
        experiment="[a-z0-9_]+",
    params:
        args=lambda wc, threads: _json.dumps(kf_sup.tier_args(config, wc.experiment, threads)),
    log:
        f"logs/{TIER}/knowledge_flow_supervised/{{experiment}}.log",
    benchmark:
        f"benchmarks/{TIER}/knowledge_flow_supervised/{{experiment}}.tsv"
    threads: config.get("threads_per_run", 1)
    resources:   # kf_supervised.resources.<preset> overrides both (paper tier: ImageNet's weeks, STL-10's memory)
        mem_mb=lambda wc: KFS.get("resources", {}).get(wc.experiment, {}).get("mem_mb", 8000),
        runtime=lambda wc: KFS.get("resources", {}).get(wc.experiment, {}).get("runtime_minutes",
                                                                               KFS.get("runtime_minutes", 240)),
    shell:
        "{PY} -m papers.knowledge_flow.supervised --experiment {wildcards.experiment}"
        " --out $(dirname {output.json}) --args {params.args:q} > {log} 2>&1"


rule kf_supervised_tables:
    """Tables 3-6 paper vs ours (test error %), every reported row shown: ours, or not run and why; and p_w per
    student layer over epochs of every Knowledge Flow run (Fig. 7 for cifar10; presets not run have no panel); test
    accuracy over epochs of every run (Figs. 4, 5 for emnist_letters, stl10)."""
    input:
        results=[f"{KFS_RUNS}/{e}/results.json" for e in KFS_RUN],
        pw=[f"{KFS_RUNS}/{e}/pw.csv" for e in KFS_RUN],
        curves=[f"{KFS_RUNS}/{e}/curves.csv" for e in KFS_RUN],
        reported=f"{workflow.basedir}/papers/knowledge_flow/reported.csv",
    output:
        csv=f"results/{TIER}/knowledge_flow/supervised_tables.csv",
        md=f"results/{TIER}/knowledge_flow/supervised_tables.md",
        fig=f"figures/{TIER}/knowledge_flow/supervised_errors.png",
        pw_fig=f"figures/{TIER}/knowledge_flow/supervised_pw.png",
        curve_fig=f"figures/{TIER}/knowledge_flow/supervised_curves.png",
    params:
        plan=_json.dumps(KFS_PLAN),
    log:
        f"logs/{TIER}/knowledge_flow_supervised/tables.log",
    benchmark:
        f"benchmarks/{TIER}/knowledge_flow_supervised/tables.tsv"
    threads: 1
    shell:
        "{PY} -m papers.knowledge_flow.supervised_tables --runs {KFS_RUNS} --tier {TIER} --plan {params.plan:q}"
        " --reported {input.reported} --out-csv {output.csv} --out-md {output.md} --out-fig {output.fig}"
        " --out-pw-fig {output.pw_fig} --out-curve-fig {output.curve_fig} 2> {log}"


_kfs_not_run = [e for e in KFS_PLAN if e not in KFS_RUN]
REPORT_SECTIONS.append({
    "title": "Knowledge Flow: Tables 3-6 (supervised; test error %, lower is better)",
    "tables": [rules.kf_supervised_tables.output.md],
    "figs": [rules.kf_supervised_tables.output.fig, rules.kf_supervised_tables.output.curve_fig,
             rules.kf_supervised_tables.output.pw_fig],
    "note": "Caveats: the paper's nets (DenseNet-BC, Chen (2017)'s, Hinton's MLPs, ResNet-50 -> 18), smaller in the "
            "default tier (DenseNet-BC-40/12, Chen's nets narrower); no data augmentation but on ImageNet; Adam for a "
            "fixed number of epochs (the nets' own recipes use SGD and learning-rate decay); the digits rows are offline "
            "stand-ins with no paper number. Short budgets leave the student partly dependent on its teachers "
            "(independence > 0), and the exported student then errs more than the mixed net (ours_mixed). supervised_pw.png: "
            "p_w per student layer over epochs (the paper's Fig. 7 is cifar10's; its Figs. 4, 5 plot accuracy on EMNIST "
            "Letters, STL-10, whose runs' p_w the emnist_letters, digits_transfer stand-in and stl10 panels show); "
            "its caption, under the tables, names the presets shown. supervised_curves.png: top-1 test accuracy over "
            "epochs of every method (the paper's Figs. 4 and 5 are its emnist_letters and stl10 panels), Knowledge "
            "Flow both mixed with its teachers and as the student alone."
            + (f" Not run in this tier for want of data: {', '.join(_kfs_not_run)} (how to get it: under the tables)."
               if _kfs_not_run else ""),
    "budget": (f"Knowledge Flow supervised: {KFS['seeds']} seed(s) per method; epochs "
               + ", ".join(f"{e} {p['epochs']}" for e, p in KFS_PLAN.items() if p["not_run"] is None)
               if KFS_RUN else "Knowledge Flow supervised: nothing run in this tier"),
})
