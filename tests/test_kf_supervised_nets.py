"""The paper's nets for Knowledge Flow's supervised Tables 3-6 (papers/knowledge_flow/supervised_nets.py): sizes and
parameter counts against hand-computed values, the layers Knowledge Flow links, the independence property with a
DenseNet teacher, the presets of the tiers, and ImageNet's streamed data path (its missing-data message offline;
reading files when torchvision is installed)."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import yaml

from papers.knowledge_flow.method import KnowledgeFlowStudent, export_student
from papers.knowledge_flow.supervised import (ClassifierNet, Split, StreamedImages, Task, dataset, experiment_args,
                                              fit, CrossEntropy, main, make_net, make_task, minibatches,
                                              random_resized_crop_box, same_name_links, tier_args, tier_plan,
                                              top1_error)
from papers.knowledge_flow.supervised_nets import (ChenConvNet, DenseNetBC, build_net, n_parameters,
                                                   resolve_net_spec)

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


def task_of(in_shape, n_classes) -> Task:
    x = torch.zeros(1, *in_shape)
    s = Split(x, torch.zeros(1, dtype=torch.long))
    return Task("t", s, s, s, n_classes, tuple(in_shape))


def densenet_bc_parameters(depth: int, growth: int, n_classes: int, in_channels: int = 3) -> int:
    """DenseNet-BC by hand: stem conv 3x3 (2k maps); per dense layer with c inputs BN(c) 2c + conv 1x1 c*4k +
    BN(4k) 8k + conv 3x3 4k*k*9; transitions BN(c) 2c + conv 1x1 c*(c//2); final BN 2c; fc c*K + K. No conv bias."""
    n, k = (depth - 4) // 6, growth
    c, total = 2 * k, in_channels * 2 * k * 9
    for block in range(3):
        for _ in range(n):
            total += 2 * c + c * 4 * k + 8 * k + 4 * k * k * 9
            c += k
        if block < 2:
            total += 2 * c + c * (c // 2)
            c //= 2
    return total + 2 * c + c * n_classes + n_classes


def test_densenet_bc_100_24_shapes_and_parameter_count():
    # k = 24: stem 3*48*9 = 1,296; block 1 (c 48 -> 432) 692,352; transition 1 (432 -> 216) 94,176; block 2
    # (216 -> 600) 955,776; transition 2 (600 -> 300) 181,200; block 3 (300 -> 684) 1,087,488; BN 1,368;
    # fc 684*10 + 10 = 6,850: 3,020,506 (C100: fc 68,500, 3,082,156)
    assert densenet_bc_parameters(100, 24, 10) == 3_020_506
    net = DenseNetBC((3, 32, 32), 10, depth=100, growth=24)
    assert n_parameters(net) == 3_020_506
    assert n_parameters(DenseNetBC((3, 32, 32), 100, depth=100, growth=24)) == 3_082_156
    # k = 12: Huang et al.'s Table 2 says 0.8M for DenseNet-BC (L=100, k=12)
    assert n_parameters(DenseNetBC((3, 32, 32), 10, depth=100, growth=12)) == densenet_bc_parameters(100, 12, 10) \
        == 769_162
    assert n_parameters(DenseNetBC((3, 32, 32), 10, depth=40, growth=12)) == densenet_bc_parameters(40, 12, 10)
    out = net.eval().forward_preacts(torch.rand(2, 3, 32, 32))
    assert out.logits.shape == (2, 10) and net.layer_names == ("block1", "block2", "block3")
    # the link points: transition outputs (432 // 2 maps at 16x16, 600 // 2 at 8x8), the pooled 684 features
    assert [tuple(z.shape[1:]) for z in out.extra["preacts"]] == [(216, 16, 16), (300, 8, 8), (684,)]
    with pytest.raises(ValueError, match="6n \\+ 4"):
        DenseNetBC((3, 32, 32), 10, depth=50, growth=12)


def test_chen_nets_layer_sizes_and_the_half_width_student():
    # CIFAR-100, n = 128: convs 3-128-128 | 256-256 | 512-512 | 1024 (pad 0), BN without affine parameters:
    # 3,584 + 147,584 + 295,168 + 590,080 + 1,180,160 + 2,359,808 + 4,719,616 + fc 1024*100 + 100 = 9,398,500
    teacher = build_net(resolve_net_spec({"arch": "chen_cifar"}), (3, 32, 32), 100)
    student = build_net(resolve_net_spec({"arch": "chen_cifar", "width": 0.5}), (3, 32, 32), 100)
    assert n_parameters(teacher) == 9_398_500
    assert n_parameters(student) == 2_376_868                  # every conv halved: 25% of the teacher's parameters
    t_maps = [(128, 32, 32), (128, 16, 16), (256, 16, 16), (256, 8, 8), (512, 8, 8), (512, 4, 4), (1024, 1, 1)]
    x = torch.rand(2, 3, 32, 32)
    for net, maps in ((teacher, t_maps), (student, [(c // 2, h, w) for c, h, w in t_maps])):
        out = net.eval().forward_preacts(x)
        assert [tuple(z.shape[1:]) for z in out.extra["preacts"]] == maps and out.logits.shape == (2, 100)
    assert [m[0].out_channels for m in student.layers] == [64, 64, 128, 128, 256, 256, 512]
    assert not any(isinstance(m, nn.BatchNorm2d) and m.affine for m in teacher.modules())
    # STL-10, n = 32 on 96x96: 896 + 18,496 + 73,856 + 147,584 + 295,168 + 590,080 + fc 256*10 + 10 = 1,128,650
    stl = build_net(resolve_net_spec({"arch": "chen_stl10"}), (3, 96, 96), 10)
    assert n_parameters(stl) == 1_128_650
    out = stl.eval().forward_preacts(torch.rand(1, 3, 96, 96))
    assert [tuple(z.shape[1:]) for z in out.extra["preacts"]] == [(32, 48, 48), (64, 24, 24), (128, 12, 12),
                                                                   (128, 6, 6), (256, 4, 4), (256, 1, 1)]
    with pytest.raises(ValueError, match="needs 32x32.*96x96"):
        build_net(resolve_net_spec({"arch": "chen_stl10"}), (3, 32, 32), 10)
    # MNIST (EMNIST letters): fc 784-256-256-26 with dropout 0.2: 200,960 + 65,792 + 6,682 = 273,434
    mlp = make_net({"arch": "chen_mnist"}, task_of((1, 28, 28), 26))
    assert isinstance(mlp, ClassifierNet) and n_parameters(mlp) == 273_434 and mlp.dropout == 0.2
    x = torch.rand(5, 1, 28, 28)
    assert torch.equal(mlp.eval()(x).logits, mlp(x).logits)                 # dropout only while training
    assert not torch.equal(mlp.train()(x).logits, mlp(x).logits)


def test_chen_pools_before_the_relu_exactly_as_after_it():
    torch.manual_seed(0)
    net = ChenConvNet((3, 8, 8), 4, [(5, 1, True), (6, 0, False)]).eval()
    x = torch.rand(3, 3, 8, 8)
    h = nn.functional.max_pool2d(torch.relu(net.layers[0](x)), 2)         # Chen: conv-BN-ReLU-pool
    h = torch.relu(net.layers[1](h))
    assert torch.equal(net(x).logits, net.head(h.flatten(1)))


def test_kf_student_with_a_same_architecture_densenet_teacher_is_the_plain_net_at_pw_one():
    torch.manual_seed(0)
    student = DenseNetBC((3, 32, 32), 10, depth=16, growth=4)
    teacher = DenseNetBC((3, 32, 32), 100, depth=16, growth=4).eval()
    x = torch.rand(4, 3, 32, 32)
    kf = KnowledgeFlowStudent(student, [teacher], same_name_links(student, [teacher]), example_obs=x)
    # the shape probe leaves the student's BatchNorm statistics alone
    assert all(torch.equal(m.running_mean, torch.zeros_like(m.running_mean)) for m in student.modules()
               if isinstance(m, nn.BatchNorm2d))
    # block boundaries: 1x1 convs on the transition outputs, a linear map on the pooled features
    q = {j: kf.Q[j][0] for j in student.layer_names}
    assert isinstance(q["block1"], nn.Conv2d) and q["block1"].kernel_size == (1, 1)
    # depth 16 = 2 layers a block; growth 4: stem 8 maps + 2 x 4 = 16, halved by transition 1 to 8
    assert (q["block1"].in_channels, q["block1"].out_channels) == (8, 8) and isinstance(q["block3"], nn.Linear)
    for mode in (False, True):                                             # eval: running stats; train: batch stats
        kf.train(mode)
        plain = export_student(kf).train(mode)
        assert not torch.allclose(kf(x).logits, plain(x).logits)           # uniform p_w: the teacher matters
        with torch.no_grad():
            for w in kf.w.values():
                w.copy_(torch.tensor([0.0, -math.inf]))                    # p_w(student) = 1
        assert torch.equal(kf(x).logits, plain(x).logits)
        with torch.no_grad():
            for w in kf.w.values():
                w.zero_()


def test_kf_links_every_layer_of_chen_nets_from_teacher_to_half_width_student():
    t = build_net(resolve_net_spec({"arch": "chen_cifar", "channels": 8}), (3, 32, 32), 100)
    s = build_net(resolve_net_spec({"arch": "chen_cifar", "channels": 8, "width": 0.5}), (3, 32, 32), 100)
    kf = KnowledgeFlowStudent(s, [t], same_name_links(s, [t]), example_obs=torch.rand(1, 3, 32, 32))
    assert [(kf.Q[j][0].in_channels, kf.Q[j][0].out_channels) for j in s.layer_names] == \
        [(8, 4), (8, 4), (16, 8), (16, 8), (32, 16), (32, 16), (64, 32)]
    assert kf(torch.rand(2, 3, 32, 32)).logits.shape == (2, 100)


def test_resnet_stage_outputs_are_linked_with_1x1_convs():
    pytest.importorskip("torchvision")
    r18 = build_net(resolve_net_spec({"arch": "resnet18"}), (3, 64, 64), 1000)
    r50 = build_net(resolve_net_spec({"arch": "resnet50"}), (3, 64, 64), 1000)
    assert n_parameters(r18) == 11_689_512 and n_parameters(r50) == 25_557_032       # torchvision's counts
    kf = KnowledgeFlowStudent(r18, [r50], same_name_links(r18, [r50]), example_obs=torch.rand(1, 3, 64, 64))
    assert [(kf.Q[j][0].in_channels, kf.Q[j][0].out_channels) for j in r18.layer_names] == \
        [(256, 64), (512, 128), (1024, 256), (2048, 512)]
    out = r50.eval().forward_preacts(torch.rand(1, 3, 64, 64))
    assert [tuple(z.shape[1:]) for z in out.extra["preacts"]] == [(256, 16, 16), (512, 8, 8), (1024, 4, 4),
                                                                   (2048, 2, 2)]


def test_net_specs_are_checked_and_arch_overrides_reach_student_and_teachers():
    with pytest.raises(ValueError, match="unknown arch 'densenet'; choose one of chen_mnist, chen_cifar"):
        resolve_net_spec({"arch": "densenet"})
    with pytest.raises(ValueError, match=r"takes no \['growth'\]; its settings are \['channels', 'width'\]"):
        resolve_net_spec({"arch": "chen_cifar", "growth": 12})
    with pytest.raises(ValueError, match="a ClassifierNet takes no \\['depth'\\]"):
        resolve_net_spec({"hidden": [8], "depth": 3})
    with pytest.raises(ValueError, match="arch_overrides.densenet_bc: DenseNet-BC depth must be 6n \\+ 4"):
        experiment_args("cifar10", {"arch_overrides": {"densenet_bc": {"depth": 41}}})
    with pytest.raises(ValueError, match="teacher 'c100' net: DenseNet-BC depth must be 6n \\+ 4"):
        experiment_args("cifar10", {"teachers": [{"name": "c100", "net": {"arch": "densenet_bc", "depth": 41}}],
                                    "methods": ["baseline"]})
    with pytest.raises(ValueError, match="arch_overrides: 'densenet' is not an arch"):
        experiment_args("cifar10", {"arch_overrides": {"densenet": {"depth": 40}}})
    a = experiment_args("cifar10", {"arch_overrides": {"densenet_bc": {"depth": 40, "growth": 12}}})
    assert a.student == {"arch": "densenet_bc", "depth": 40, "growth": 12}
    assert all(t["net"] == a.student for t in a.teachers)
    b = experiment_args("cifar100_kd", {"arch_overrides": {"chen_cifar": {"channels": 32}}})
    assert b.student == {"arch": "chen_cifar", "channels": 32, "width": 0.5} and b.teachers[0]["net"]["channels"] == 32


def test_tier_presets_use_the_papers_nets_and_smaller_ones_in_the_default_tier():
    paper = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
    default = yaml.safe_load((ROOT / "config/default.yaml").read_text())
    p = {e: experiment_args(e, tier_args(paper, e)) for e in ("cifar10", "cifar100_kd", "emnist_letters", "stl10",
                                                             "imagenet_kd", "mnist_kd")}
    assert p["cifar10"].student == {"arch": "densenet_bc", "depth": 100, "growth": 24} and p["cifar10"].epochs == 300
    assert p["cifar10"].batch_size == 64 and p["cifar10"].device == "auto"
    assert p["cifar100_kd"].student["width"] == 0.5 and p["cifar100_kd"].teachers[0]["net"]["channels"] == 128
    assert p["emnist_letters"].student == {"arch": "chen_mnist"} and p["emnist_letters"].epochs == 40
    assert p["stl10"].image_size == [96, 96] and p["stl10"].student["arch"] == "chen_stl10"
    assert (p["imagenet_kd"].student, p["imagenet_kd"].teachers[0]["net"]) == ({"arch": "resnet18"},
                                                                              {"arch": "resnet50"})
    assert p["mnist_kd"].student == {"hidden": [800, 800]}                 # Hinton's MLPs: 800-800 vs 1200-1200
    assert p["mnist_kd"].teachers[0]["net"] == {"hidden": [1200, 1200]}
    d = experiment_args("cifar10", tier_args(default, "cifar10"))
    assert d.student == {"arch": "densenet_bc", "depth": 40, "growth": 12}
    assert experiment_args("digits_kd", tier_args(default, "digits_kd")).device == "cpu"     # unchanged presets


def test_in_memory_minibatches_are_the_old_index_batches():
    x, y = torch.rand(10, 1, 2, 2), torch.arange(10)
    got = list(minibatches(Split(x, y), 4, torch.Generator().manual_seed(3)))
    want = [(x[i], y[i]) for i in torch.randperm(10, generator=torch.Generator().manual_seed(3)).split(4)]
    assert len(got) == 3 and all(torch.equal(a, c) and torch.equal(b, d) for (a, b), (c, d) in zip(got, want))
    assert [b.tolist() for _, b in minibatches(Split(x, y), 4)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_random_resized_crop_box_by_seed():
    boxes = [random_resized_crop_box(60, 80, torch.Generator().manual_seed(s)) for s in range(50)]
    assert boxes == [random_resized_crop_box(60, 80, torch.Generator().manual_seed(s)) for s in range(50)]
    for top, left, h, w in boxes:
        assert 0 <= top and top + h <= 60 and 0 <= left and left + w <= 80
        assert 0.08 * 4800 * 0.9 <= h * w <= 4800 and 3 / 4 * 0.9 <= w / h <= 4 / 3 * 1.1
    assert len(set(boxes)) > 40


def test_missing_imagenet_names_the_path_and_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        dataset("imagenet", tmp_path, "train")
    msg = str(e.value)
    assert "'imagenet' (train) not found" in msg and str(tmp_path / "imagenet" / "train") in msg
    assert "image-net.org" in msg and "torchvision.datasets.ImageNet(" in msg
    with pytest.raises(FileNotFoundError, match="imagenet/val"):
        dataset("imagenet", tmp_path, "test")                            # ImageNet's test split: ILSVRC-2012 val
    config = {"kf_supervised": {"data_dir": str(tmp_path), "seeds": 1, "experiments": {"table4": ["imagenet_kd"]}}}
    plan = tier_plan(config)["imagenet_kd"]
    assert plan["not_run"].startswith(f"dataset unavailable (expected {tmp_path / 'imagenet' / 'train'}, "
                                      f"{tmp_path / 'imagenet' / 'val'}; get it with the ILSVRC-2012 archives")
    assert [m[0] for m in plan["missing"]] == ["imagenet", "imagenet"]
    from common.report import load_reported
    from papers.knowledge_flow import supervised_tables as st
    reported = load_reported(ROOT / "papers/knowledge_flow/reported.csv")
    table, _ = st.build(tmp_path / "runs", {"imagenet_kd": plan}, reported)
    row = table[(table["row"] == "Imagenet") & (table["column"] == "Ours")].iloc[0]
    assert row["ours"] == f"not run: {plan['not_run']}" and row["method"] == "kf:resnet50"
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match="imagenet"):
        main(["--experiment", "imagenet_kd", "--out", str(out), "--args", f"{{data_dir: {tmp_path}}}"])
    assert not out.exists()


def tiny_imagefolder(root: Path, n_per_class: int = 4):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c, colour in enumerate(((200, 30, 30), (30, 30, 200))):
            (root / "imagenet" / split / f"n0{c}").mkdir(parents=True)
            for i in range(n_per_class):
                img = np.clip(np.array(colour) + rng.integers(-20, 20, (40 + 4 * i, 50, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(root / "imagenet" / split / f"n0{c}" / f"{i}.png")


def test_streamed_imagenet_split_reads_files_per_minibatch(tmp_path):
    pytest.importorskip("torchvision")
    tiny_imagefolder(tmp_path)
    task = make_task("imagenet", data_dir=tmp_path, val_fraction=0.25, image_size=[32, 32])
    assert isinstance(task.train.x, StreamedImages) and task.train.x.augment and not task.val.x.augment
    assert task.in_shape == (3, 32, 32) and task.n_classes == 2 and (len(task.train.y), len(task.val.y)) == (6, 2)
    assert task.train.x[:2].shape == (2, 3, 32, 32) and 0 <= float(task.train.x[:2].min()) <= 1
    # the batches, crops included, are a function of the generator only, not of the DataLoader's workers
    runs = []
    for workers in (0, 2):
        task.train.x.workers = workers
        runs.append(list(minibatches(task.train, 4, torch.Generator().manual_seed(1))))
    assert [len(b[1]) for b in runs[0]] == [4, 2]
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(*runs))
    task.train.x.workers = 0
    net = make_net({"hidden": [8]}, task)
    fit(net, task.train, CrossEntropy(), epochs=2, batch_size=4, lr=0.01, seed=0)
    assert 0.0 <= top1_error(net, task.test) <= 100.0


def test_theta_old_pass_leaves_batchnorm_running_statistics_alone():
    from papers.knowledge_flow.method import KFArgs, KnowledgeFlowHook

    torch.manual_seed(0)
    student = DenseNetBC((3, 32, 32), 10, depth=16, growth=4)
    teacher = DenseNetBC((3, 32, 32), 10, depth=16, growth=4).eval()
    x = torch.rand(6, 3, 32, 32)
    kf = KnowledgeFlowStudent(student, [teacher], same_name_links(student, [teacher]), example_obs=x).train()
    hook = KnowledgeFlowHook(KFArgs(lambda1=0.1, lambda2=0.01))
    hook.theta_old = {k: v.detach().clone() for k, v in kf.named_parameters() if v.requires_grad}
    before = {k: b.clone() for k, b in kf.named_buffers()}
    hook.old_logits(kf, x)
    assert all(torch.equal(before[k], b) for k, b in kf.named_buffers())   # the extra pass updated nothing
    kf(x)                                                                  # while a training forward does
    assert not all(torch.equal(before[k], b) for k, b in kf.named_buffers())
