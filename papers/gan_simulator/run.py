"""Generative Adversarial Simulator experiments, the command line: image classification and multiple input modes
(an image preset, images.py) or policy distillation (``policy``, policy.py).

An image preset (presets.yaml) with its overrides: train (or load the cached) teacher on the task, then run every
listed method (dafl, dfad, ours, kd_real, kd_noise; papers/gan_simulator/method.py) over the seeds and record the
student's test accuracy::

    python -m papers.gan_simulator.run --experiment digits --out runs/gas/digits \\
        --args '{"seeds": 3, "gas": {"student_steps": 2000}}'

Policy distillation, simulator-free (experiment ``policy``): a zoo teacher labels generated observations; a
student policy is distilled from generated observations only, then plays the game next to the teacher, a
uniformly random policy and distillation on real teacher rollouts (kd_real)::

    python -m papers.gan_simulator.run --experiment policy --out runs/gas/policy/MinAtar-Breakout \\
        --args '{"game": "MinAtar/Breakout", "teacher": "teachers/smoke/ppo/MinAtar-Breakout/expert/seed0"}'

Both write ``results.csv`` (one row per method and seed), ``curves.csv`` (the student's test accuracy or
loss every ``log_every`` student steps) and ``results.json`` (resolved args, teacher, per-method summary, rows;
written last: the run's completion marker), all atomically (harness.py, which also holds the real-data guard's
checks). Errors a user can cause (unknown key, missing dataset or teacher) end with one line naming the cause and
the fix. The pipeline's plan (rules.smk) is plan.py.
"""

from __future__ import annotations

import argparse

from papers.gan_simulator.images import EXPERIMENTS, experiment_args, missing_dataset, run_image_experiment
from papers.gan_simulator.policy import PolicyArgs, run_policy_experiment


def main(argv=None):
    from common.cli import add_run_options, run_mapping

    ap = argparse.ArgumentParser(description="Generative Adversarial Simulator experiments (data-free distillation).")
    ap.add_argument("--experiment", required=True, help=f"one of {', '.join(EXPERIMENTS)}, or policy")
    add_run_options(ap, "output directory (results.json, results.csv, curves.csv)",
                    "ImageArgs / PolicyArgs fields as JSON or YAML")
    a = ap.parse_args(argv)
    d = run_mapping(a)
    if a.experiment == "policy":
        run_policy_experiment(PolicyArgs.from_dict(d), a.out)
    else:
        args = experiment_args(a.experiment, d)
        why = missing_dataset(args.dataset, args.data_dir)
        if why:
            raise FileNotFoundError(f"experiment '{a.experiment}' cannot run: {why}")
        run_image_experiment(a.experiment, args, a.out)


if __name__ == "__main__":
    from common.cli import run as cli_run

    cli_run(main)
