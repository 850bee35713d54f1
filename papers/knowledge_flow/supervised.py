"""Knowledge Flow for supervised learning (Sec. 4.2, appendix 7.1; Tables 3-6): the program, readable top to bottom.

The student is a classifier with the LayeredNet split (``input / preact / activate / heads``), so the
*same* :class:`~papers.knowledge_flow.method.KnowledgeFlowStudent` that mixes teacher layers into the RL
student mixes them here, and the *same* :class:`~papers.knowledge_flow.method.KnowledgeFlowHook` adds the
transfer losses. Eq. 3 of the paper::

    min_{theta,w,Q}  E_(x,y) [ CE(f~_theta(x), y) + lambda1 * l_dep(w) + lambda2 * KL(f~_theta(x) || f~_theta_old(x)) ]

with lambda1 ramped linearly from 0 to its selected value over training (as in RL), l_dep of Eq. 5, and
theta_old the parameters of the previous optimiser step. After training the exported student (no
teacher, Q or w) is evaluated: top-1 test error in %, averaged over ``seeds`` runs (Sec. 4.2: three).

Comparisons (same loop, other objectives): ``baseline`` (the student alone, cross-entropy),
``finetune:<teacher>`` (the student initialised from a same-architecture teacher), ``kd:<teacher>``
(Hinton et al. 2015: alpha * T^2 * soft-target cross-entropy at temperature T + (1 - alpha) * CE) and
``kf:<t1>+<t2>`` (Knowledge Flow with those teachers). lambda1/lambda2 (and T/alpha for KD) are chosen
on a validation split carved from the training set, from small grids (Sec. 4.2: "determined using the
validation set").

In the pipeline, papers/knowledge_flow/supervised.smk runs the presets a tier lists (config ``kf_supervised``;
supervised_plan.tier_plan) and builds Tables 3-6 (supervised_tables.py); presets whose data is absent are shown as
not run, with the expected paths and how to get the data. By hand::

    python -m papers.knowledge_flow.supervised --experiment digits_kd --out runs/kf_sup/digits_kd \\
        --args '{epochs: 20, seeds: 3}'

It writes ``results.json`` (resolved args, teachers' errors, per-method summary), ``results.csv`` (one
row per method and seed) and ``pw.csv`` (the normalised weights p_w of every candidate -- 'student',
'teacher 0', ... -- per student layer, at the start and after every epoch, for every final Knowledge Flow
run: the data of the paper's Fig. 7), all atomically.

Choices where the paper is silent:

* Nets: the paper's (supervised_nets.py; a spec's ``arch`` picks one, no arch = :class:`ClassifierNet`):
  DenseNet-BC-100/24 for Table 3, Hinton's MNIST MLPs (teacher 1200-1200, student 800-800) and Chen (2017)'s
  CIFAR-100 net (student: every conv halved) for Table 4, ResNet-50 -> ResNet-18 (torchvision, untrained) for
  its ImageNet column, Chen's MNIST MLP for Table 5 and his STL-10 net for Table 6 (it needs 96x96 inputs, so
  the CIFAR teachers' images are upsampled to 96x96). The presets hold them at the paper's sizes; the
  default tier shrinks them with ``arch_overrides`` (DenseNet-BC-40/12, Chen's CIFAR net at 32 channels, STL-10
  at 16). No data augmentation for the in-memory datasets (the paper: Huang et al.'s standard augmentation on
  CIFAR); ImageNet gets the usual random-resized crops and flips (:class:`StreamedImages`).
* Links: ``links: same`` joins each student layer to the teacher layer of the same name (fc1<-fc1, ...);
  Q is a linear map (fc) or a 1x1 conv (conv), as in RL. Which layers each net exposes (every layer of the
  MLPs and Chen's nets; DenseNet's three block boundaries; ResNet's four stage outputs): supervised_nets.py.
* Optimiser: Adam, lr 1e-3, no weight decay, no learning-rate decay, a fixed number of epochs for every method;
  batch 64 unless a preset sets the net's own (Chen 200, ImageNet 256). The nets' own recipes differ: Huang et
  al. and He et al. train with SGD (lr 0.1, momentum 0.9, weight decay 1e-4, lr / 10 at fixed epochs), Chen's
  CIFAR / STL-10 nets with Adam 1e-3 and lr / 10 at epochs 80 and 120, his MNIST MLP with SGD 0.01; only the
  schedule lengths are taken (config/paper.yaml).
* Data on ``device`` (cpu | cuda | auto): in-memory tensors move there once; ImageNet (1.28M JPEGs) is never
  held in memory: a :class:`StreamedImages` split is read per minibatch by a DataLoader (:func:`minibatches`).
* theta_old: the previous optimiser step's parameters (``theta_old: ema`` gives Sec. 7.6's average).
* Validation: ``val_fraction`` (10%) of the training set by a fixed permutation (split_seed), the same
  for every method and seed; the final runs train on the rest only. Selection trains one run per grid
  point with the first seed and keeps the lowest validation error of the *exported* student (ties: the
  first in grid order); that run is reused as the first seed's final run.
* Table 4's 'MNIST w/o digit 3' (after Hinton): the teacher sees all digits; the student's training and
  validation sets lack the dropped classes; the test set is complete.
* Fine-tuning copies every hidden layer; the output layer too when the class counts agree (else fresh).
* scikit-learn's digits (8x8, 1,797 images, bundled, no download) are the offline smoke task: a fixed
  70/30 train/test split (seed 0), pixels / 16.

Budget caveat: Adam moves each logit w roughly by lr per step whatever lambda1 is, so the student becomes
independent (p_w(student) -> 1) only after a few / lr steps. Short runs (a few hundred steps on digits)
end with p_w(student) ~ 0.5 and an exported student much worse than the mixed net; the rows record
``independence`` (max_j 1 - p_w^j(student)) and ``test_error_mixed`` so this is visible. On digits,
60 epochs at lr 3e-3 (~1,000 steps) reach independence ~0.08 and an exported error close to the mixed one.

Where each part lives (this file is the program: teachers, every method with its lambdas chosen on validation,
the seeds, the results files; it also re-exports the names below, the import path of the tests and rules):

=========================  ==============================================================================
supervised_data.py         datasets (digits offline, torchvision's from data_dir, ImageNet streamed), Task,
                           minibatches; where each dataset lies and the digits splits: common/datasets.py
supervised_nets.py         the nets: ClassifierNet, the paper's (DenseNet-BC, Chen's, ResNets), make_net,
                           fine-tuning's copy, ``links: same``
supervised_objectives.py   CrossEntropy, Eq. 3 (KnowledgeFlowObjective, supervised_kf_loss), Hinton KD
supervised_fit.py          fit (Adam, seeded minibatches: common/classify.py, GAS's loop too), top1_error,
                           the p_w and test-curve recorders
supervised_args.py         SupArgs (one experiment's arguments, checked), TeacherSpec
supervised_presets.yaml    the presets (EXPERIMENTS), with where each value comes from
supervised_presets.py      load_presets, experiment_args, PAPER_ROWS (the paper row each preset fills)
supervised_plan.py         the pipeline's plan: a tier's presets, their data check, the config check
supervised_tables.py       Tables 3-6 and the figures from the runs' results
=========================  ==============================================================================
"""

from __future__ import annotations

import itertools
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from common.io import seed_everything, write_csv, write_json
from papers.knowledge_flow.method import KFArgs, KnowledgeFlowStudent, export_student, student_independence
from papers.knowledge_flow.supervised_args import SupArgs, TeacherSpec
from papers.knowledge_flow.supervised_data import (DATASETS, STREAMED, TORCHVISION, Split, StreamedImages, Task,
                                                   data_device, dataset, expected_path, fetch_command, make_task,
                                                   minibatches, random_resized_crop_box)
from papers.knowledge_flow.supervised_fit import _both, curve_recorder, fit, pw_recorder, top1_error
from papers.knowledge_flow.supervised_nets import ClassifierNet, finetune_classifier, make_net, same_name_links
from papers.knowledge_flow.supervised_objectives import (CrossEntropy, HintonKD, KnowledgeFlowObjective, hinton_kd_loss,
                                                         supervised_kf_loss)
from papers.knowledge_flow.supervised_plan import (TIER_TABLES, check_tier_config, experiment_datasets,
                                                   missing_data, tier_args, tier_experiments, tier_plan,
                                                   unavailable)
from papers.knowledge_flow.supervised_presets import EXPERIMENTS, NOT_REPRODUCED, PAPER_ROWS, experiment_args

__all__ = [  # the program's own names, then the ones it re-exports from the modules above
    "train_teacher", "run_method", "grid", "run_experiment", "CURVE_COLUMNS", "PW_COLUMNS", "write_results", "main",
    "SupArgs", "TeacherSpec",
    "DATASETS", "STREAMED", "TORCHVISION", "Split", "StreamedImages", "Task", "data_device", "dataset",
    "expected_path", "fetch_command", "make_task", "minibatches", "random_resized_crop_box",
    "curve_recorder", "fit", "pw_recorder", "top1_error",
    "ClassifierNet", "finetune_classifier", "make_net", "same_name_links",
    "CrossEntropy", "HintonKD", "KnowledgeFlowObjective", "hinton_kd_loss", "supervised_kf_loss",
    "TIER_TABLES", "check_tier_config", "experiment_datasets", "missing_data", "tier_args", "tier_experiments",
    "tier_plan", "unavailable",
    "EXPERIMENTS", "NOT_REPRODUCED", "PAPER_ROWS", "experiment_args",
]


def train_teacher(spec: dict, args: SupArgs, target: Task) -> tuple[ClassifierNet, float]:
    """Train one teacher on its source task; returns it (frozen) and its test error there."""
    t = TeacherSpec(**spec)
    source = (t.dataset or args.dataset, t.classes, list(t.drop_train_classes))
    if source == (args.dataset, args.classes, list(args.drop_train_classes)):
        task = target                                          # the target task itself (an 'expert' teacher)
    else:
        task = make_task(*source, data_dir=args.data_dir, val_fraction=args.val_fraction,
                         image_size=args.image_size, split_seed=args.split_seed, device=args.device)
    seed_everything(args.teacher_seed)
    net = make_net(t.net, task)
    fit(net, task.train, CrossEntropy(), t.epochs or args.epochs, args.batch_size, args.lr, args.teacher_seed)
    return net.requires_grad_(False).eval(), top1_error(net, task.test)



def run_method(method: str, params: dict, seed: int, args: SupArgs, task: Task, teachers: dict,
               pw_log: list | None = None, curve_log: list | None = None) -> dict:
    """Train one student with `method` and `params` ({lambda1, lambda2} or {temperature, alpha}) from
    `seed`; returns its validation and test error (the exported student's, for kf). For kf, p_w of every
    candidate per student layer at the start and after every epoch is appended to `pw_log` if given
    (:func:`pw_recorder`); for every method the test accuracy at the start and after every epoch is appended
    to `curve_log` if given (:func:`curve_recorder`)."""
    kind, _, rest = method.partition(":")
    names = [n for n in rest.split("+") if n]
    seed_everything(seed)
    student = make_net(args.student, task)
    row = {"method": method, "seed": seed, **params}
    # the plain student's curve (baseline, fine-tune, KD); Knowledge Flow records its mixed net and student below
    curve = None if curve_log is None else curve_recorder(student, task.test, method, seed, curve_log)
    if kind in ("baseline", "finetune"):
        if kind == "finetune":
            finetune_classifier(student, teachers[names[0]])
        model = fit(student, task.train, CrossEntropy(), args.epochs, args.batch_size, args.lr, seed, on_epoch=curve)
    elif kind == "kd":
        teacher = teachers[names[0]]
        if teacher.n_classes != task.n_classes:
            raise ValueError(f"kd:{names[0]}: the teacher has {teacher.n_classes} classes, the target "
                             f"{task.n_classes}; KD needs the same output classes")
        model = fit(student, task.train, HintonKD(teacher, params["temperature"], params["alpha"]),
                    args.epochs, args.batch_size, args.lr, seed, on_epoch=curve)
    else:
        ts = [teachers[n] for n in names]
        links = same_name_links(student, ts) if args.links == "same" else list(args.links)
        # cache_rollouts off: no-grad forwards here are evaluations, which no update reuses
        kf = KnowledgeFlowStudent(student, ts, links, example_obs=task.train.x[:1], cache_rollouts=False)
        objective = KnowledgeFlowObjective(KFArgs(lambda1=params["lambda1"], lambda2=params["lambda2"],
                                                  theta_old=args.theta_old, ema_alpha=args.ema_alpha))
        record = _both(None if pw_log is None else pw_recorder(kf, method, seed, names, pw_log),
                       None if curve_log is None else curve_recorder(kf, task.test, method, seed, curve_log, student))
        fit(kf, task.train, objective, args.epochs, args.batch_size, args.lr, seed, on_epoch=record)
        row.update(test_error_mixed=top1_error(kf, task.test),
                   independence=student_independence(kf)["max"])
        model = export_student(kf)
    row.update(val_error=top1_error(model, task.val), test_error=top1_error(model, task.test))
    return row


def grid(method: str, args: SupArgs) -> list[dict]:
    kind = method.partition(":")[0]
    if kind == "kf":
        return [{"lambda1": a, "lambda2": b} for a, b in itertools.product(args.lambda1_grid, args.lambda2_grid)]
    if kind == "kd":
        return [{"temperature": t, "alpha": a} for t, a in itertools.product(args.kd_temperature_grid, args.kd_alpha_grid)]
    return [{}]


def run_experiment(args: SupArgs, log=print) -> dict:
    """Teachers, then for every method: hyper-parameters chosen on validation (first seed), then `seeds`
    runs; returns {'teachers', 'summary', 'rows', 'selection', 'args', 'pw', 'curves'} (errors in %; 'pw': the
    p_w records of every final Knowledge Flow run, see :func:`pw_recorder`; 'curves': the test accuracy per
    epoch of every final run, see :func:`curve_recorder`)."""
    torch.set_num_threads(args.threads)
    task = make_task(args.dataset, args.classes, args.drop_train_classes, data_dir=args.data_dir,
                     val_fraction=args.val_fraction, image_size=args.image_size, split_seed=args.split_seed,
                     device=args.device)
    teachers, teacher_err = {}, {}
    for spec in args.teachers:
        teachers[spec["name"]], teacher_err[spec["name"]] = train_teacher(spec, args, task)
        log(f"teacher {spec['name']}: test error {teacher_err[spec['name']]:.2f}%")
    rows, selection, summary, pw, curves = [], {}, {}, [], []
    for method in args.methods:
        logs = [[] for _ in grid(method, args)]
        clogs = [[] for _ in grid(method, args)]
        tried = [run_method(method, p, 0, args, task, teachers, lg, cl)
                 for p, lg, cl in zip(grid(method, args), logs, clogs)]
        i_best = min(range(len(tried)), key=lambda i: tried[i]["val_error"])   # ties: first in grid order
        best = tried[i_best]
        params = {k: best[k] for k in grid(method, args)[0]}
        selection[method] = [{k: r[k] for k in (*params, "val_error")} for r in tried]
        pw += logs[i_best]                                         # the selected run is the first seed's
        curves += clogs[i_best]
        runs = [best] + [run_method(method, params, s, args, task, teachers, pw, curves) for s in range(1, args.seeds)]
        rows += runs
        errs = [r["test_error"] for r in runs]
        summary[method] = {"test_error_mean": float(np.mean(errs)), "test_error_std": float(np.std(errs)),
                           "n_seeds": len(errs), "selected": params}
        log(f"{method}: test error {np.mean(errs):.2f} +- {np.std(errs):.2f}% over {len(errs)} seeds {params}")
    return {"args": asdict(args), "teachers": teacher_err, "summary": summary, "rows": rows,
            "selection": selection, "n_train": len(task.train.y), "n_val": len(task.val.y), "n_test": len(task.test.y),
            "pw": pw, "curves": curves}


CURVE_COLUMNS = ["preset", "method", "seed", "epoch", "step", "test_acc", "test_acc_student"]
PW_COLUMNS = ["preset", "method", "seed", "epoch", "step", "layer", "candidate", "teacher", "source", "p_w"]


def write_results(result: dict, out_dir) -> None:
    """results.csv (one row per method and seed), pw.csv (p_w of every candidate per student layer and epoch,
    every final Knowledge Flow run, :data:`PW_COLUMNS`; a header only when no kf method ran), curves.csv (test
    accuracy per epoch of every final run, :data:`CURVE_COLUMNS`), then results.json (the run's completion
    marker; without the p_w and curve records)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cols = ["method", "seed", "lambda1", "lambda2", "temperature", "alpha", "val_error", "test_error",
            "test_error_mixed", "independence"]
    write_csv(out / "results.csv", result["rows"], cols, extrasaction="ignore")
    preset = result.get("experiment", "")
    write_csv(out / "pw.csv", ({"preset": preset, **r} for r in result.get("pw", [])), PW_COLUMNS)
    write_csv(out / "curves.csv", ({"preset": preset, **r} for r in result.get("curves", [])), CURVE_COLUMNS)
    write_json(out / "results.json", {k: v for k, v in result.items() if k not in ("pw", "curves")})


def main(argv=None):
    import argparse

    from common.cli import parse_mapping

    ap = argparse.ArgumentParser(description="Supervised Knowledge Flow (Tables 3-6): teachers, baselines, KD, ours.")
    ap.add_argument("--experiment", required=True, help=f"one of {', '.join(EXPERIMENTS)}")
    ap.add_argument("--out", required=True, help="output directory (results.json, results.csv, pw.csv)")
    ap.add_argument("--args", default="{}", help="SupArgs overrides as YAML/JSON, e.g. '{epochs: 5, seeds: 1}'")
    a = ap.parse_args(argv)
    args = experiment_args(a.experiment, parse_mapping(a.args))
    result = run_experiment(args)
    write_results({"experiment": a.experiment, **result}, a.out)


if __name__ == "__main__":
    from common.cli import run as cli_run

    cli_run(main)
