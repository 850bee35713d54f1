# H-PR multi-task policy distillation (Yin & Pan, AAAI 2017): Table 1 + Fig. 3 (proposed / DIST / AMN, Uniform
# sampling), Fig. 4 (H-PR / PR / Uniform, steps to score thresholds), Fig. 5 (H-PR with p = 5, 10, 15) and
# Fig. 2 (teacher state values visited by three Breakout policies). Which runs and teachers: plan.py.
# Runs live in runs/<tier>/hpr_distillation/<run>/seed<k>/ (curve.csv, eval.json, model.pt); teachers are the
# zoo's DQN teachers (common/teachers.smk, algo dqn, the Nature body).
import json as _hpr_json

from papers.hpr_distillation import plan as hpr_plan

hpr_plan.check(config)
HPR = hpr_plan.section(config)
HPR_RUNS = f"runs/{TIER}/hpr_distillation"
HPR_EXPERIMENTS = hpr_plan.experiments(config)
CLAIM_VARS.update({f"hpr_{exp}_{label}": run for exp, runs in HPR_EXPERIMENTS.items() for label, run in runs.items()})
HPR_RUN_SPECS = hpr_plan.runs(config)
HPR_SEEDS = range(int(HPR.get("seeds", 1)))
HPR_FIG2 = hpr_plan.fig2(config)
HPR_REPORTED = f"{workflow.basedir}/papers/hpr_distillation/reported.csv"


def _hpr_evals(exp):
    return [f"{HPR_RUNS}/{r}/seed{s}/eval.json" for r in dict.fromkeys(HPR_EXPERIMENTS[exp].values()) for s in HPR_SEEDS]


rule hpr_train:
    """One multi-task student over all its games (architecture x sampler x games), one seed."""
    input:
        teachers=lambda wc: [f"{hpr_plan.teacher_dir(config, TIER, g)}/model.zip" for g in HPR_RUN_SPECS[wc.run]["games"]],
    output:
        curve=f"{HPR_RUNS}/{{run}}/seed{{seed}}/curve.csv",
        eval=f"{HPR_RUNS}/{{run}}/seed{{seed}}/eval.json",
        model=f"{HPR_RUNS}/{{run}}/seed{{seed}}/model.pt",
    wildcard_constraints:
        run="|".join(HPR_RUN_SPECS) or "no_hpr_runs",
        seed=r"\d+",
    params:
        args=lambda wc, threads: hpr_plan.run_args(config, TIER, wc.run, wc.seed, threads, config.get("device", "auto")),
    log:
        f"logs/{TIER}/hpr_distillation/{{run}}_seed{{seed}}.log",
    benchmark:
        f"benchmarks/{TIER}/hpr_distillation/{{run}}_seed{{seed}}.tsv"
    threads: config.get("threads_per_run", 1)
    resources:
        mem_mb=lambda wc: hpr_plan.memory_mb(config, wc.run),
        runtime=lambda wc: hpr_plan.runtime_minutes(config, wc.run),
    shell:
        "{PY} -m papers.hpr_distillation.method --out $(dirname {output.curve}) --args {params.args:q} 2> {log}"


rule hpr_teacher_eval:
    """A DQN teacher scored under the students' protocol (Table 1's 'Teacher (score)')."""
    input:
        model=lambda wc: f"{hpr_plan.teacher_dir(config, TIER, wc.game)}/model.zip",
    output:
        f"{HPR_RUNS}/teachers/{{game}}/eval.json",
    params:
        teacher=lambda wc: hpr_plan.teacher_dir(config, TIER, wc.game),
        protocol=_hpr_json.dumps(hpr_plan.eval_protocol(config)) if HPR else "{}",
    log:
        f"logs/{TIER}/hpr_distillation/teacher_eval_{{game}}.log",
    benchmark:
        f"benchmarks/{TIER}/hpr_distillation/teacher_eval_{{game}}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    shell:
        "{PY} -m papers.hpr_distillation.teacher_play eval --teacher {params.teacher} --game {wildcards.game}"
        " --protocol {params.protocol:q} --out {output} 2> {log}"


rule hpr_table1:
    """Table 1 (% of teacher per game and architecture, geometric mean; paper vs ours) and the Fig. 3 curves."""
    input:
        evals=_hpr_evals("table1") if "table1" in HPR_EXPERIMENTS else [],
        teachers=[f"{HPR_RUNS}/teachers/{g}/eval.json" for g in (HPR.get("table1") or {}).get("games", [])],
        reported=HPR_REPORTED,
    output:
        csv=f"results/{TIER}/hpr_distillation/table1.csv",
        md=f"results/{TIER}/hpr_distillation/table1.md",
        fig=f"figures/{TIER}/hpr_distillation/fig3_curves.png",
    params:
        spec=lambda wc, input: _hpr_json.dumps({
            "runs": HPR_EXPERIMENTS["table1"], "games": HPR["table1"]["games"], "fig3_games": HPR.get("fig3_games"),
            "teachers": {g: f"{HPR_RUNS}/teachers/{g}/eval.json" for g in HPR["table1"]["games"]}}),
    log:
        f"logs/{TIER}/hpr_distillation/table1.log",
    benchmark:
        f"benchmarks/{TIER}/hpr_distillation/table1.tsv"
    threads: 1
    shell:
        "{PY} -m papers.hpr_distillation.tables table1 --runs {HPR_RUNS} --spec {params.spec:q} --tier {TIER}"
        " --reported {input.reported} --out-csv {output.csv} --out-md {output.md} --out-fig {output.fig} 2> {log}"


rule hpr_sampling:
    """Fig. 4 (H-PR vs PR vs Uniform) or Fig. 5 (H-PR with p = 5, 10, 15): curves, scores, steps to thresholds."""
    input:
        evals=lambda wc: _hpr_evals(wc.exp),
        reported=HPR_REPORTED,
    output:
        csv=f"results/{TIER}/hpr_distillation/{{exp}}.csv",
        md=f"results/{TIER}/hpr_distillation/{{exp}}.md",
        fig=f"figures/{TIER}/hpr_distillation/{{exp}}_curves.png",
    wildcard_constraints:
        exp="fig4|fig5",
    params:
        spec=lambda wc: _hpr_json.dumps({"runs": HPR_EXPERIMENTS[wc.exp], "games": HPR["fig4"]["games"],
                                         "thresholds": hpr_plan.thresholds(config)}),
    log:
        f"logs/{TIER}/hpr_distillation/{{exp}}.log",
    benchmark:
        f"benchmarks/{TIER}/hpr_distillation/{{exp}}.tsv"
    threads: 1
    shell:
        "{PY} -m papers.hpr_distillation.tables sampling --name {wildcards.exp} --runs {HPR_RUNS} --spec {params.spec:q}"
        " --tier {TIER} --reported {input.reported} --out-csv {output.csv} --out-md {output.md} --out-fig {output.fig}"
        " 2> {log}"


rule hpr_state_values:
    """Fig. 2: the expert teacher's V(s) over the states of three policies of increasing ability."""
    input:
        models=[f"{hpr_plan.teacher_dir(config, TIER, HPR_FIG2['game'], k)}/model.zip"
                for k in dict.fromkeys(HPR_FIG2["policies"] + ["expert"])] if HPR_FIG2 else [],
    output:
        values=f"{HPR_RUNS}/fig2/state_values.csv",
        scores=f"{HPR_RUNS}/fig2/scores.json",
    params:
        policies=" ".join(f"--policy Net-{i + 1}/{k}={hpr_plan.teacher_dir(config, TIER, HPR_FIG2['game'], k)}"
                          for i, k in enumerate(HPR_FIG2["policies"])) if HPR_FIG2 else "",
        value_teacher=hpr_plan.teacher_dir(config, TIER, HPR_FIG2["game"]) if HPR_FIG2 else "",
        game=HPR_FIG2["game"] if HPR_FIG2 else "",
        steps=HPR_FIG2["steps"] if HPR_FIG2 else 0,
        epsilon=HPR_FIG2["epsilon"] if HPR_FIG2 else 0.05,
    log:
        f"logs/{TIER}/hpr_distillation/fig2_state_values.log",
    benchmark:
        f"benchmarks/{TIER}/hpr_distillation/fig2_state_values.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=lambda wc: 30 + (HPR_FIG2["steps"] * 3 // 20_000 if HPR_FIG2 else 0),
    shell:
        "{PY} -m papers.hpr_distillation.teacher_play state-values --game {params.game}"
        " --value-teacher {params.value_teacher} {params.policies} --steps {params.steps} --epsilon {params.epsilon}"
        " --out-csv {output.values} --out-json {output.scores} 2> {log}"


rule hpr_fig2:
    """Fig. 2(b): histograms (equal bins over the pooled V range) and the policies' play."""
    input:
        values=rules.hpr_state_values.output.values,
        scores=rules.hpr_state_values.output.scores,
    output:
        csv=f"results/{TIER}/hpr_distillation/fig2.csv",
        md=f"results/{TIER}/hpr_distillation/fig2.md",
        fig=f"figures/{TIER}/hpr_distillation/fig2_state_values.png",
    params:
        bins=HPR_FIG2["bins"] if HPR_FIG2 else 10,
    log:
        f"logs/{TIER}/hpr_distillation/fig2.log",
    benchmark:
        f"benchmarks/{TIER}/hpr_distillation/fig2.tsv"
    threads: 1
    shell:
        "{PY} -m papers.hpr_distillation.tables fig2 --values {input.values} --scores {input.scores} --bins {params.bins}"
        " --tier {TIER} --out-csv {output.csv} --out-md {output.md} --out-fig {output.fig} 2> {log}"


if HPR:
    _hpr_teachers = [f"{hpr_plan.teacher_dir(config, TIER, g, k)}/eval.json" for g, k in hpr_plan.teachers(config)]
    _hpr_args = HPR.get("args", {})
    _hpr_budget = (f"H-PR distillation: {_hpr_args.get('total_steps', 4_000_000):,} steps per game per run (paper: up "
                   f"to 4M), {len(HPR_SEEDS)} seed(s), evaluation every {_hpr_args.get('eval_every', 25_000):,} updates "
                   f"for {_hpr_args.get('eval', {}).get('steps', 100_000):,} steps (paper: 25,000 / 100,000); DQN "
                   f"teachers {teacher_steps('dqn', 'expert'):,} steps")
    _hpr_note = ("Caveats: our DQN teachers (SB3, config/teachers.yml) stand in for the authors'; % of teacher is "
                 "relative to *our* teacher, scored under the students' protocol. Replay memories: "
                 f"{_hpr_args.get('replay', {})} (paper: Uniform 500,000; H-PR 5 x 200,000 per game). At reduced "
                 "budgets the students, and the gaps between architectures and samplers, are a statement about budget.")
    if "table1" in HPR_EXPERIMENTS:
        REPORT_SECTIONS.append({
            "title": "H-PR distillation: Table 1 and Fig. 3 (proposed / DIST / AMN, % of teacher)",
            "tables": [rules.hpr_table1.output.md], "figs": [rules.hpr_table1.output.fig],
            "note": _hpr_note, "budget": _hpr_budget, "teachers": _hpr_teachers})
    for _exp, _title in (("fig4", "Fig. 4 (H-PR / PR / Uniform, steps to a score)"),
                         ("fig5", "Fig. 5 (H-PR partition count p)")):
        if _exp in HPR_EXPERIMENTS:
            REPORT_SECTIONS.append({
                "title": f"H-PR distillation: {_title}",
                "tables": [f"results/{TIER}/hpr_distillation/{_exp}.md"],
                "figs": [f"figures/{TIER}/hpr_distillation/{_exp}_curves.png"],
                "note": _hpr_note if "table1" not in HPR_EXPERIMENTS else "", "teachers": _hpr_teachers})
    if HPR_FIG2:
        REPORT_SECTIONS.append({
            "title": "H-PR distillation: Fig. 2 (teacher state values visited by policies of increasing ability)",
            "tables": [rules.hpr_fig2.output.md], "figs": [rules.hpr_fig2.output.fig],
            "note": "Net-1 < Net-2 < Net-3 (labelled with their zoo kinds) are our zoo's untrained, non-expert "
                    "(reduced budget) and expert DQN teachers of the game; V(s) is the expert's.",
            "teachers": _hpr_teachers})
