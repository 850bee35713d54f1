# Teachers: trained once per tier with stable-baselines3 and shared by every paper that names them.
#   teachers/<tier>/<algo>/<game>/<kind>/seed<k>/{model.zip, config.json, eval.json}
from common.zoo import game_from_slug as _zoo_game_from_slug, is_minatar as _zoo_is_minatar


def teacher_steps(algo, kind):
    """Training budget of a teacher: teachers.algo_steps.<algo> (e.g. the DQN teachers of H-PR) or teachers.steps."""
    t = config["teachers"]
    return 0 if kind == "untrained" else t.get("algo_steps", {}).get(algo, t["steps"])[kind]


rule teacher:
    output:
        model="teachers/{tier}/{algo}/{game}/{kind}/seed{seed}/model.zip",
        eval="teachers/{tier}/{algo}/{game}/{kind}/seed{seed}/eval.json",
    wildcard_constraints:
        kind="expert|non_expert|untrained",
        algo="ppo|a2c|dqn",
    params:
        steps=lambda wc: teacher_steps(wc.algo, wc.kind),
        # body: teachers.body for the tier's actor-critic algo; the Nature-DQN body for the others (DQN teachers,
        # and the A2C teachers of Knowledge Flow's different-architecture ablation); teachers.bodies overrides
        # (MinAtar games, written MinAtar-<Game> in the path by common.zoo.teacher_dir: the MinAtar body, the only one that fits 10x10)
        body=lambda wc: "minatar" if _zoo_is_minatar(_zoo_game_from_slug(wc.game)) else config["teachers"].get("bodies", {}).get(
            wc.algo, config["teachers"].get("body", "a3c") if wc.algo == config["teachers"]["algo"] else "nature"),
        episodes=config["teachers"].get("eval", {}).get("episodes", 10),
        hyperparams=f"{workflow.basedir}/config/teachers.yml",
    log:
        "logs/{tier}/teachers/{algo}_{game}_{kind}_seed{seed}.log",
    benchmark:
        "benchmarks/{tier}/teachers/{algo}_{game}_{kind}_seed{seed}.tsv"
    threads: 1
    resources:
        mem_mb=lambda wc: 8000 if wc.algo == "dqn" else 6000,  # SB3 DQN: 100k-frame-stack buffer, obs + next obs: 5.6 GB
        runtime=lambda wc: 60 + teacher_steps(wc.algo, wc.kind) // (12_000 if wc.algo == "dqn" else 400_000),
    shell:
        "{PY} -m common.zoo train --algo {wildcards.algo} --game {wildcards.game} --seed {wildcards.seed}"
        " --kind {wildcards.kind} --steps {params.steps} --body {params.body} --threads {threads}"
        " --eval-episodes {params.episodes} --hyperparams {params.hyperparams} --out $(dirname {output.model}) 2> {log}"
