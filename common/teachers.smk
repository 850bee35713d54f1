# Teachers: trained once per tier with stable-baselines3 and shared by every paper that names them.
#   teachers/<tier>/<algo>/<game>/<kind>/seed<k>/{model.zip, config.json, eval.json}


rule teacher:
    output:
        model="teachers/{tier}/{algo}/{game}/{kind}/seed{seed}/model.zip",
        eval="teachers/{tier}/{algo}/{game}/{kind}/seed{seed}/eval.json",
    wildcard_constraints:
        kind="expert|non_expert|untrained",
        algo="ppo|a2c|dqn",
    params:
        steps=lambda wc: 0 if wc.kind == "untrained" else config["teachers"]["steps"][wc.kind],
        # body: teachers.body for the tier's actor-critic algo; the Nature-DQN body for the others (DQN teachers,
        # and the A2C teachers of Knowledge Flow's different-architecture ablation); teachers.bodies overrides
        body=lambda wc: config["teachers"].get("bodies", {}).get(
            wc.algo, config["teachers"].get("body", "a3c") if wc.algo == config["teachers"]["algo"] else "nature"),
        episodes=config["teachers"].get("eval", {}).get("episodes", 10),
        hyperparams=f"{workflow.basedir}/config/teachers.yml",
    log:
        "logs/{tier}/teachers/{algo}_{game}_{kind}_seed{seed}.log",
    benchmark:
        "benchmarks/{tier}/teachers/{algo}_{game}_{kind}_seed{seed}.tsv"
    threads: 1
    resources:
        mem_mb=6000,
        runtime=lambda wc: 60 + (config["teachers"]["steps"].get(wc.kind, 0) // 400_000),
    shell:
        "{PY} -m common.zoo train --algo {wildcards.algo} --game {wildcards.game} --seed {wildcards.seed}"
        " --kind {wildcards.kind} --steps {params.steps} --body {params.body} --threads {threads}"
        " --eval-episodes {params.episodes} --hyperparams {params.hyperparams} --out $(dirname {output.model}) 2> {log}"
