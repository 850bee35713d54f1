"""The one classifier loop (common/classify.py): minibatch orders of a seed, top-1 counts and fit on hand-worked
values, and that each paper's caller (GAS's teacher training, Knowledge Flow's supervised fit) gives the bits of the
loop it replaced."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from common import classify
from common.nets import NetOut


# ------------------------------------------------------------------------------------------------ minibatch order
def test_randperm_order_of_a_seed():
    # torch.randperm(5, generator seeded 0) = [4, 0, 1, 3, 2], split in twos
    g = torch.Generator().manual_seed(0)
    assert [t.tolist() for t in classify.epoch_order(5, 2, g)] == [[4, 0], [1, 3], [2]]
    # the dataloader order draws one int64 first, so the same seed gives another permutation
    g = torch.Generator().manual_seed(0)
    assert [t.tolist() for t in classify.epoch_order(5, 2, g, "dataloader")] == [[3, 1], [0, 4], [2]]
    with pytest.raises(ValueError, match="unknown minibatch order 'shuffle'"):
        classify.epoch_order(5, 2, g, "shuffle")


@pytest.mark.parametrize("n,bs", [(10, 3), (12, 4), (7, 7), (5, 8)])
def test_dataloader_order_is_a_seeded_dataloader_draw_for_draw(n, bs):
    ds = torch.utils.data.TensorDataset(torch.arange(n).float(), torch.arange(n))
    g_loader, g_ours = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    loader = torch.utils.data.DataLoader(ds, batch_size=bs, shuffle=True, generator=g_loader)
    for _ in range(3):                                     # epochs: the generator's state carries over alike
        ref = [(x.clone(), y.clone()) for x, y in loader]
        ours = list(classify.minibatches(ds, bs, g_ours, "dataloader"))
        assert len(ours) == len(ref) and all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
                                             for a, b in zip(ours, ref))
    assert torch.equal(g_loader.get_state(), g_ours.get_state())


def test_pairs_and_datasets_give_the_same_minibatches():
    x, y = torch.randn(9, 3), torch.arange(9)
    pair, ds = (x, y), torch.utils.data.TensorDataset(x, y)
    for gen in (None, 7):
        a = classify.minibatches(pair, 4, None if gen is None else torch.Generator().manual_seed(gen))
        b = classify.minibatches(ds, 4, None if gen is None else torch.Generator().manual_seed(gen))
        assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b))
    assert [yb.tolist() for _, yb in classify.minibatches(pair, 4)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8]]
    assert classify.size(pair) == classify.size(ds) == 9


# ------------------------------------------------------------------------------------------------ top-1 and logits
def test_top1_counts_by_hand_and_the_training_mode_is_kept():
    class Fixed(nn.Module):
        def forward(self, x):
            return x, None                                 # (logits, features): the logits are the input

    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, -1.0], [0.0, 1.0], [1.0, 0.0]])
    y = torch.tensor([0, 0, 0, 1, 1])                      # right: rows 0, 2, 3 -> 3 of 5
    m = Fixed().train()
    assert classify.top1_counts(m, [(logits[:2], y[:2]), (logits[2:], y[2:])]) == (3, 5)
    assert m.training
    assert classify.top1_counts(m.eval(), [(logits, y)]) == (3, 5) and not m.training
    assert classify.top1_counts(m, []) == (0, 0)


def test_logits_of_every_output_kind():
    z = torch.randn(2, 3)
    assert classify.logits_of(z) is z
    assert classify.logits_of(NetOut(z, None)) is z
    assert classify.logits_of((z, torch.zeros(2))) is z


# ------------------------------------------------------------------------------------------------ fit
class _Recording(classify.CrossEntropy):
    def __init__(self):
        self.progress, self.updates = [], 0

    def loss(self, model, x, y, progress, step):
        self.progress.append((progress, step, len(y)))
        return super().loss(model, x, y, progress, step)

    def after_update(self, model, batch):
        self.updates += 1


def test_fit_steps_progress_and_epoch_callbacks_by_hand():
    torch.manual_seed(0)
    net, data = nn.Linear(3, 2), (torch.randn(5, 3), torch.tensor([0, 1, 0, 1, 1]))
    obj, epochs_seen = _Recording(), []
    out = classify.fit(net, data, obj, epochs=2, batch_size=2, lr=0.1, seed=0,
                       on_epoch=lambda e, s: epochs_seen.append((e, s)))
    # 5 examples in twos: 3 steps an epoch (2, 2, 1), 6 in all; progress = step / 6
    assert [(round(p * 6), s, b) for p, s, b in obj.progress] == [(0, 0, 2), (1, 1, 2), (2, 2, 1),
                                                                 (3, 3, 2), (4, 4, 2), (5, 5, 1)]
    assert obj.updates == 6 and epochs_seen == [(0, 0), (1, 3), (2, 6)]
    assert out is net and not net.training


def test_fit_is_one_adam_step_on_cross_entropy_by_hand():
    # one example, one step: Adam's first step moves every parameter with a nonzero gradient by -lr * sign(grad)
    net = nn.Linear(1, 2, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[1.0], [-1.0]]))
    x, y = torch.tensor([[1.0]]), torch.tensor([1])
    # d CE / d logits = softmax - onehot = (+, -): the weight of class 0 falls, class 1's rises
    classify.fit(net, (x, y), classify.CrossEntropy(), epochs=1, batch_size=1, lr=0.5, seed=0)
    assert net.weight.flatten().tolist() == pytest.approx([0.5, -0.5], abs=1e-6)


def test_fit_stops_on_a_non_finite_loss_naming_the_step_and_fix():
    class NaNLoss(classify.CrossEntropy):
        def loss(self, model, x, y, progress, step):
            loss, logs = super().loss(model, x, y, progress, step)
            return loss * (float("nan") if step == 2 else 1.0), logs

    with pytest.raises(FloatingPointError, match=r"toy training: non-finite loss at step 2 \(epoch 1\) "
                                                 r"\(NaNLoss loss = nan\); lower lr \(now 0.01\)"):
        classify.fit(nn.Linear(2, 2), (torch.randn(4, 2), torch.tensor([0, 1, 0, 1])), NaNLoss(), epochs=3,
                     batch_size=2, lr=0.01, seed=0, what="toy training")


def test_gas_teacher_training_keeps_the_bits_of_its_dataloader_loop():
    """images.train_classifier against the loop it replaced (DataLoader shuffle, seeded), with a class map (a Dataset
    of python-int labels) and a batch size that leaves a short last minibatch."""
    from common.io import seed_everything
    from papers.gan_simulator.images import RelabelledDataset, train_classifier
    from papers.gan_simulator.method import LeNet5, digits_dataset

    train, _ = digits_dataset(seed=0)
    train = RelabelledDataset(torch.utils.data.TensorDataset(*(t[:300] for t in train.tensors)),
                              [0, 1, 2, 3, 4, 0, 1, 2, 3, 4])
    torch.manual_seed(3)
    ref = LeNet5(n_classes=5)
    new = LeNet5(n_classes=5)
    new.load_state_dict(ref.state_dict())
    seed_everything(11)                                    # the replaced loop, as it was
    opt = torch.optim.Adam(ref.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(train, batch_size=64, shuffle=True,
                                         generator=torch.Generator().manual_seed(11))
    for _ in range(2):
        for x, y in loader:
            loss = F.cross_entropy(ref(x)[0], torch.as_tensor(y))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    train_classifier(new, train, 2, 1e-3, 64, 11, "cpu")
    assert all(torch.equal(a, b) for a, b in zip(ref.state_dict().values(), new.state_dict().values()))


def test_kf_fit_keeps_the_bits_of_its_randperm_loop():
    from papers.knowledge_flow.supervised import ClassifierNet, CrossEntropy, Split, fit

    split = Split(torch.rand(50, 1, 8, 8), torch.randint(0, 10, (50,)))
    torch.manual_seed(4)
    ref = ClassifierNet((1, 8, 8), 10, hidden=[16])
    new = ClassifierNet((1, 8, 8), 10, hidden=[16])
    new.load_state_dict(ref.state_dict())
    opt, g = torch.optim.Adam(ref.parameters(), lr=1e-2), torch.Generator().manual_seed(9)
    for _ in range(2):
        for idx in torch.randperm(50, generator=g).split(16):
            loss = F.cross_entropy(ref(split.x[idx]).logits, split.y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    fit(new, split, CrossEntropy(), epochs=2, batch_size=16, lr=1e-2, seed=9)
    assert all(torch.equal(a, b) for a, b in zip(ref.state_dict().values(), new.state_dict().values()))
