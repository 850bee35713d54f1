"""Generative Adversarial Simulator (papers/gan_simulator/method.py): formulas against hand-computed values,
generator re-initialisation, the exemplar buffer, data provenance, and a tiny digits run (seconds)."""

import math

import pytest
import torch
from torch.utils.data import DataLoader

from papers.gan_simulator.method import (SOURCES, ExemplarBuffer, GASArgs, Generator, LeNet5, LeNet5Half,
                                         accuracy, activation_loss, digits_dataset, disagreement, distill,
                                         generator_loss, information_entropy_loss, kd_loss,
                                         load_torchvision_dataset, one_hot_loss, reinit_generator)

torch.set_num_threads(1)
LN3 = math.log(3.0)


# --------------------------------------------------------------------------------------------- losses
def test_one_hot_loss_hand_computed():
    # row 1: softmax(ln3, 0, 0) = (3, 1, 1) / 5, argmax 0 -> CE = -ln(3/5) = ln(5/3)
    # row 2: softmax(0, ln3, 0) = (1, 3, 1) / 5, argmax 1 -> CE = ln(5/3); batch mean = ln(5/3) = 0.5108
    t = torch.tensor([[LN3, 0.0, 0.0], [0.0, LN3, 0.0]])
    assert one_hot_loss(t).item() == pytest.approx(math.log(5 / 3), abs=1e-6)


def test_information_entropy_loss_hand_computed():
    # same rows: pbar = ((3+1)/10, (1+3)/10, (1+1)/10) = (2/5, 2/5, 1/5)
    # sum pbar ln pbar = 2 * 0.4 ln 0.4 + 0.2 ln 0.2 = -0.733033 - 0.321888 = -1.054920
    t = torch.tensor([[LN3, 0.0, 0.0], [0.0, LN3, 0.0]])
    expected = 2 * 0.4 * math.log(0.4) + 0.2 * math.log(0.2)
    assert information_entropy_loss(t).item() == pytest.approx(expected, abs=1e-6)
    # minimising it balances classes: three confident samples of three different classes give
    # pbar = (1/3, 1/3, 1/3) -> sum = ln(1/3) = -ln 3 (the minimum); all of one class -> pbar = (1,0,0) -> 0
    balanced = 50.0 * torch.eye(3)
    collapsed = 50.0 * torch.tensor([[1.0, 0, 0]] * 3)
    assert information_entropy_loss(balanced).item() == pytest.approx(-LN3, abs=1e-5)
    assert information_entropy_loss(collapsed).item() == pytest.approx(0.0, abs=1e-5)


def test_activation_loss_hand_computed():
    # -mean |f| = -(1 + 2 + 3 + 0) / 4 = -1.5
    assert activation_loss(torch.tensor([[1.0, -2.0], [3.0, 0.0]])).item() == pytest.approx(-1.5)


def test_disagreement_l1_hand_computed():
    # |t - s| = |1-0|, |2-2|, |3-5|, |4-4| = 1, 0, 2, 0 -> mean over batch and logits = 3 / 4 = 0.75
    t = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    s = torch.tensor([[0.0, 2.0], [5.0, 4.0]])
    assert disagreement(t, s, "l1").item() == pytest.approx(0.75)


def test_kd_loss_and_kl_disagreement_hand_computed():
    # row 1: p = softmax(ln3, 0) = (3/4, 1/4), q = softmax(0, 0) = (1/2, 1/2)
    #        KL(p||q) = 3/4 ln(3/2) + 1/4 ln(1/2) = 0.304099 - 0.173287 = 0.130812
    # row 2: identical logits -> KL = 0;  batch mean = 0.130812 / 2 = 0.065406 (T = 1: T^2 = 1)
    t = torch.tensor([[LN3, 0.0], [0.0, 0.0]])
    s = torch.zeros(2, 2)
    row1 = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert kd_loss(t, s, T=1.0).item() == pytest.approx(row1 / 2, abs=1e-6)
    assert disagreement(t, s, "kl", T=1.0).item() == pytest.approx(row1 / 2, abs=1e-6)
    # T = 2: t/2 = (ln sqrt3, 0) -> p = (sqrt3, 1) / (sqrt3 + 1) = (0.633975, 0.366025), q = (1/2, 1/2)
    #        KL = p0 ln(2 p0) + p1 ln(2 p1) = 0.150494 - 0.114179 = 0.036315, times T^2 = 4 -> 0.145260
    r3 = math.sqrt(3.0)
    p0, p1 = r3 / (r3 + 1), 1 / (r3 + 1)
    expected_t2 = 4 * (p0 * math.log(2 * p0) + p1 * math.log(2 * p1))
    assert kd_loss(t[:1], s[:1], T=2.0).item() == pytest.approx(expected_t2, abs=1e-6)
    assert disagreement(t[:1], s[:1], "kl", T=2.0).item() == pytest.approx(expected_t2, abs=1e-6)
    # KL is invariant to a constant shift of either logit vector and 0 on identical distributions
    assert kd_loss(t + 7.0, s - 3.0).item() == pytest.approx(row1 / 2, abs=1e-5)
    assert kd_loss(t, t.clone()).item() == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="l1' or 'kl"):
        disagreement(t, s, "l2")


def test_generator_loss_is_the_weighted_sum_with_adversarial_sign():
    # teacher logits of the one-hot test, features of the activation test, student logits 0:
    #   G1 = ln(5/3), G2 = -1.054920, G3 = -1.5, D_l1 = mean |t - 0| = (ln3 + ln3) / 6 = ln3 / 3
    #   L_G = 1 * G1 + 5 * G2 + 0.1 * G3 - 2 * D   (w_adv = 2: the generator maximises D)
    t = torch.tensor([[LN3, 0.0, 0.0], [0.0, LN3, 0.0]])
    f = torch.tensor([[1.0, -2.0], [3.0, 0.0]])
    args = GASArgs(method="ours", w_adv=2.0, adv_kind="l1").resolved()
    total, parts = generator_loss(t, f, torch.zeros(2, 3), args)
    g2 = 2 * 0.4 * math.log(0.4) + 0.2 * math.log(0.2)
    expected = math.log(5 / 3) + 5 * g2 + 0.1 * (-1.5) - 2 * LN3 / 3
    assert total.item() == pytest.approx(expected, abs=1e-5)
    assert parts["disagreement"] == pytest.approx(LN3 / 3, abs=1e-6)
    # DFAD's preset: only the adversarial term
    total, parts = generator_loss(t, None, torch.zeros(2, 3), GASArgs(method="dfad").resolved())
    assert set(parts) == {"disagreement"} and total.item() == pytest.approx(-LN3 / 3, abs=1e-6)


# ------------------------------------------------------------------------------ generator and buffer
def test_generator_shapes_and_standardised_output():
    torch.manual_seed(0)
    g = Generator(image_size=32, channels=1).train()
    x = g(torch.randn(4, 100))
    assert x.shape == (4, 1, 32, 32) and torch.isfinite(x).all()
    # last layer is BN(affine=False) in train mode: each channel has mean 0 and (biased) variance
    # v / (v + eps) ~= 1 over batch x pixels
    assert x.mean().item() == pytest.approx(0.0, abs=1e-4)
    assert x.var(unbiased=False).item() == pytest.approx(1.0, abs=1e-2)
    g84 = Generator(image_size=84, channels=4).train()
    x = g84(torch.randn(2, 100))
    assert x.shape == (2, 4, 84, 84) and torch.isfinite(x).all()
    per_channel_mean = x.mean(dim=(0, 2, 3))
    assert torch.allclose(per_channel_mean, torch.zeros(4), atol=1e-4)
    with pytest.raises(ValueError, match="multiple of 4"):
        Generator(image_size=30)


def test_reinit_generator_resets_everything_and_buffer_survives():
    g = Generator(seed=1)
    # one training step: parameters (BN affine ones included) and BN running stats move
    opt = torch.optim.Adam(g.parameters(), lr=0.1)
    g.train()(torch.randn(8, 100))[:, :, :16].sum().backward()
    opt.step()
    before = {k: v.clone() for k, v in g.state_dict().items()}
    assert g.bn0.num_batches_tracked.item() == 1
    buf = ExemplarBuffer(capacity=16, seed=0)
    with torch.no_grad():
        buf.add(g(torch.randn(6, 100)))
    kept = buf.contents().clone()

    rng_before = torch.get_rng_state()
    reinit_generator(g, seed=2)
    assert torch.equal(torch.get_rng_state(), rng_before)  # global RNG untouched
    fresh = Generator(seed=2).state_dict()
    for k, v in g.state_dict().items():
        assert torch.equal(v, fresh[k]), k                 # == a fresh init with the same seed
    for k in ("fc.weight", "conv1.weight", "conv3.weight", "bn1.weight", "bn0.running_mean"):
        assert not torch.equal(g.state_dict()[k], before[k]), k
    assert torch.equal(g.bn0.running_mean, torch.zeros(128)) and g.bn0.num_batches_tracked.item() == 0
    assert torch.equal(buf.contents(), kept)               # exemplars survive the re-init
    # bounded by capacity
    with torch.no_grad():
        buf.add(g(torch.randn(30, 100)))
    assert len(buf) == 16 and buf.seen == 36 and buf.sample(5).shape == (5, 1, 32, 32)


def test_exemplar_buffer_reservoir_frequencies():
    # Algorithm R: after n = 100 offers into capacity 10 each item is kept with probability 10/100 = 0.1,
    # early ones as often as late ones (FIFO would keep only items 90..99). 2,000 runs: sd = 0.0067.
    counts = torch.zeros(100)
    items = torch.arange(100, dtype=torch.float32).view(100, 1)
    for seed in range(2000):
        buf = ExemplarBuffer(capacity=10, seed=seed)
        for chunk in items.split(7):  # several add() calls, several rows each
            buf.add(chunk)
        assert len(buf) == 10 and len(set(buf.contents().view(-1).tolist())) == 10
        counts[buf.contents().view(-1).long()] += 1
    freq = counts / 2000
    assert (freq - 0.1).abs().max().item() < 0.035
    assert freq[:50].mean().item() == pytest.approx(0.1, abs=0.005)


# ---------------------------------------------------------------------------------------- provenance
def _tiny(method, **kw):
    return GASArgs(method=method, student_steps=6, batch_size=8, log_every=3, **kw)


@pytest.mark.parametrize("method", ["dafl", "dfad", "ours", "kd_noise"])
def test_data_free_methods_never_feed_real_data(method):
    torch.manual_seed(0)
    teacher, student = LeNet5(), LeNet5Half()
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    kw = dict(reinit_every=1, buffer_capacity=8, exemplars_per_reinit=4) if method == "ours" else {}
    r = distill(teacher, student, _tiny(method, **kw), noise_only=(method == "kd_noise"))
    assert len(r.provenance) == 6
    assert all(rec["real"] == 0 for rec in r.provenance)
    assert all(sum(rec[s] for s in SOURCES) == 8 for rec in r.provenance)
    expected_sources = {"dafl": {"generator"}, "dfad": {"generator"}, "ours": {"generator", "buffer"},
                        "kd_noise": {"noise"}}[method]
    assert r.sources_seen() == expected_sources
    if method == "ours":  # 1 G : 5 S steps over 6 S steps -> 2 G steps; re-init after the first only (the
        # second falls in the last iteration): 2 generators, 4 exemplars in the buffer
        assert r.generator_steps == 2 and r.lives == 2 and len(r.buffer) == 4
        assert r.provenance[0]["buffer"] == 4 and r.provenance[0]["generator"] == 4  # buffer_mix 0.5
    if method == "dfad":
        assert r.generator_steps == 2 and r.lives == 1
    for k, v in teacher.state_dict().items():  # teacher frozen
        assert torch.equal(v, teacher_before[k]), k
    assert [h["student_step"] for h in r.history] == [3, 6]
    # real data handed to a data-free method is refused before any training
    real = DataLoader(torch.utils.data.TensorDataset(torch.zeros(4, 1, 32, 32), torch.zeros(4).long()))
    with pytest.raises(ValueError, match="data-free"):
        distill(teacher, student, _tiny(method), real_loader=real)
    with pytest.raises(ValueError, match="data-free"):
        distill(teacher, student, _tiny(method), data_free=False, real_loader=real)


def test_real_data_needs_explicit_opt_in():
    teacher, student = LeNet5(), LeNet5Half()
    real = DataLoader(torch.utils.data.TensorDataset(torch.zeros(4, 1, 32, 32), torch.zeros(4).long()))
    with pytest.raises(ValueError, match="data_free=False"):
        distill(teacher, student, _tiny("kd_real"), real_loader=real)
    with pytest.raises(ValueError, match="needs real_loader"):
        distill(teacher, student, _tiny("kd_real"), data_free=False)
    with pytest.raises(ValueError, match="noise_only"):
        distill(teacher, student, _tiny("dafl"), noise_only=True)
    r = distill(teacher, student, GASArgs(method="kd_real", student_steps=3, log_every=3), data_free=False,
                real_loader=DataLoader(real.dataset, batch_size=2))
    assert r.sources_seen() == {"real"} and [p["real"] for p in r.provenance] == [2, 2, 2]


# ------------------------------------------------------------------------------------------- config
def test_gasargs_from_dict_rejects_unknown_key_and_resolves_presets():
    with pytest.raises(KeyError, match="'reinit_evry'"):
        GASArgs.from_dict({"method": "ours", "reinit_evry": 10})
    a = GASArgs.from_dict({"method": "dfad"})
    assert (a.w_adv, a.adv_kind, a.student_loss, a.g_steps, a.s_steps, a.w_one_hot) == (1.0, "l1", "l1", 1, 5, 0.0)
    a = GASArgs.from_dict({"method": "ours", "reinit_every": 50})
    assert (a.reinit_every, a.w_info_entropy, a.buffer_mix, a.exemplars_per_reinit) == (50, 5.0, 0.5, 512)
    with pytest.raises(ValueError, match="w_adv"):
        GASArgs.from_dict({"method": "kd_real", "w_adv": 1.0})
    with pytest.raises(ValueError, match="method must be one of"):
        GASArgs.from_dict({"method": "gan"})
    with pytest.raises(ValueError, match="reinit_every > 0"):
        GASArgs.from_dict({"method": "ours", "reinit_every": 0})


# ------------------------------------------------------------------------------------ digits, end to end
def test_tiny_digits_run_end_to_end(tmp_path):
    train, test = digits_dataset(seed=0)
    assert train.tensors[0].shape[1:] == (1, 32, 32) and len(train) + len(test) == 1797
    assert train.tensors[0].min() >= -1 and train.tensors[0].max() <= 1
    torch.manual_seed(0)
    teacher = LeNet5()
    opt = torch.optim.Adam(teacher.parameters(), lr=3e-3)
    loader = DataLoader(train, batch_size=64, shuffle=True)
    test_loader = DataLoader(test, batch_size=512)
    for _ in range(3):
        for x, y in loader:
            loss = torch.nn.functional.cross_entropy(teacher(x).logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    teacher_acc = accuracy(teacher, test_loader)
    assert teacher_acc > 0.8

    accs = {}
    for method, kw in [("kd_real", dict(student_steps=30, batch_size=64)),
                       ("dafl", dict(student_steps=3, batch_size=16))]:
        torch.manual_seed(1)
        logged = []
        r = distill(teacher, LeNet5Half(), GASArgs(method=method, log_every=kw["student_steps"], **kw),
                    data_free=(method != "kd_real"), real_loader=loader if method == "kd_real" else None,
                    log=logged.append, evaluate=lambda m: {"test_acc": accuracy(m, test_loader)})
        accs[method] = r.history[-1]["test_acc"]
        assert logged == r.history and math.isfinite(r.history[-1]["loss_student"])
        assert 0.0 <= accs[method] <= 1.0
    assert set(accs) == {"kd_real", "dafl"}

    with pytest.raises(FileNotFoundError, match=r"(?s)mnist.*MNIST/raw.*torchvision.datasets.MNIST.*download=True"):
        load_torchvision_dataset("mnist", tmp_path / "data")
