"""Actor-critic networks shared by the papers, each exposing its per-layer pre-activations.

* :class:`A3CNet`: the A3C feed-forward net (Mnih et al. 2016): conv 16x8x8/4, conv 32x4x4/2, FC 256;
  Knowledge Flow's student and same-architecture teachers. Maps on 84x84: 20x20x16, 9x9x32.
* :class:`NatureNet`: the Nature DQN body (Mnih et al. 2015): conv 32x8x8/4, 64x4x4/2, 64x3x3/1, FC 512.
* :class:`MinAtarNet`: conv 16x3x3/1, FC 128 (Young & Tian 2019), for the MinAtar analogue.
* :class:`CA3CNet`: cA3C (Lin et al. 2017): 4 x conv(32, 3x3, stride 2, SAME, ELU) -> LSTM(256) ->
  policy logits, a separate distillation-logits head, value.

A feed-forward net is a list of layers; layer i computes a pre-activation ``z_i = layer_i(h_{i-1})`` and
``h_i = act(z_i)``. :meth:`LayeredNet.preact` and :meth:`LayeredNet.activate` expose that split, which is
what Knowledge Flow mixes (``h = act(sum_l p(l) Q(l) z(l))``).

Every net returns a :class:`NetOut`; the learner calls ``forward_sequence`` (a [T, N] rollout) for the
update and ``forward`` (one step) for acting, so recurrent and feed-forward nets share one learner.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F


class NetOut(NamedTuple):
    logits: torch.Tensor
    value: torch.Tensor
    state: tuple | None = None
    extra: dict | None = None


def init_layer(layer: nn.Module, gain: float = math.sqrt(2.0)) -> nn.Module:
    """Orthogonal weights, zero bias (OpenAI baselines / SB3 convention for actor-critic nets)."""
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class NetMisfitError(ValueError):
    """A net's convolutions do not fit the observation's frames (e.g. the A3C net's 8x8 kernel on MinAtar's 10x10)."""


def conv_misfit(convs, hw) -> str | None:
    """Why valid (unpadded) convolutions [(out_channels, kernel, stride), ...] do not fit frames of side (h, w),
    or None when every layer's input is at least its kernel."""
    h, w = hw
    for i, (_, k, s) in enumerate(convs):
        if h < k or w < k:
            return f"conv{i + 1}'s {k}x{k} kernel is larger than its {h}x{w} input"
        h, w = (h - k) // s + 1, (w - k) // s + 1
    return None


class LayeredNet(nn.Module):
    """Feed-forward actor-critic: named layers, a policy head and a value head on the last hidden layer."""

    recurrent = False

    def __init__(self, obs_shape, n_actions: int, convs, fc: int, obs_scale: float = 1 / 255.0,
                 activation: str = "relu"):
        super().__init__()
        self.obs_shape = tuple(obs_shape)
        self.n_actions = n_actions
        self.register_buffer("obs_scale", torch.tensor(float(obs_scale)), persistent=False)
        self.act_fn = {"relu": F.relu, "elu": F.elu}[activation]
        layers, names = [], []
        c, h, w = self.obs_shape
        why = conv_misfit(convs, (h, w))
        if why:
            raise NetMisfitError(f"{type(self).__name__} does not fit observations of shape {self.obs_shape}: {why}")
        for i, (out_c, k, s) in enumerate(convs):
            layers.append(init_layer(nn.Conv2d(c, out_c, k, s)))
            names.append(f"conv{i + 1}")
            c, h, w = out_c, (h - k) // s + 1, (w - k) // s + 1
        self.flat_dim = c * h * w
        self.map_shapes = None  # filled lazily for reporting
        layers.append(init_layer(nn.Linear(self.flat_dim, fc)))
        names.append("fc")
        self.layers = nn.ModuleList(layers)
        self.layer_names = tuple(names)
        self.hidden_dim = fc
        self.policy = init_layer(nn.Linear(fc, n_actions), gain=0.01)
        self.value = init_layer(nn.Linear(fc, 1), gain=1.0)

    # -- the split Knowledge Flow needs -------------------------------------------------------------
    def input(self, obs: torch.Tensor) -> torch.Tensor:
        # channels-last halves the CPU cost of the conv backward pass (scripts/bench_learner.py)
        # (converting the uint8 frames before the float cast moves a quarter of the bytes)
        if obs.dim() == 4:
            obs = obs.contiguous(memory_format=torch.channels_last)
        return obs.to(torch.float32).mul_(self.obs_scale)

    def preact(self, i: int, h: torch.Tensor) -> torch.Tensor:
        """z_i from h_{i-1} (flattening before the first fully connected layer)."""
        layer = self.layers[i]
        if isinstance(layer, nn.Linear) and h.dim() > 2:
            h = h.flatten(1)
        return layer(h)

    def activate(self, z: torch.Tensor) -> torch.Tensor:
        return self.act_fn(z)

    def heads(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.policy(h), self.value(h).squeeze(-1)

    # -- forward passes -------------------------------------------------------------------------------
    def forward_preacts(self, obs: torch.Tensor) -> NetOut:
        """Forward pass that also returns every layer's pre-activation in ``extra['preacts']``."""
        h = self.input(obs)
        preacts = []
        for i in range(len(self.layers)):
            z = self.preact(i, h)
            preacts.append(z)
            h = self.activate(z)
        logits, value = self.heads(h)
        return NetOut(logits, value, None, {"preacts": preacts, "hidden": h})

    def forward(self, obs: torch.Tensor, state=None, starts=None) -> NetOut:
        h = self.input(obs)
        for i in range(len(self.layers)):
            h = self.activate(self.preact(i, h))
        logits, value = self.heads(h)
        return NetOut(logits, value)

    def forward_sequence(self, obs: torch.Tensor, state=None, starts=None) -> NetOut:
        """obs [T, N, ...] -> logits [T, N, A], value [T, N]."""
        t, n = obs.shape[:2]
        out = self.forward(obs.reshape(t * n, *obs.shape[2:]))
        extra = None if out.extra is None else out.extra
        return NetOut(out.logits.reshape(t, n, -1), out.value.reshape(t, n), None, extra)

    def initial_state(self, n: int, device=None):
        return None


class A3CNet(LayeredNet):
    """A3C feed-forward net (Mnih et al. 2016)."""

    CONVS = [(16, 8, 4), (32, 4, 2)]

    def __init__(self, obs_shape, n_actions: int, **kw):
        super().__init__(obs_shape, n_actions, convs=self.CONVS, fc=256, **kw)


class NatureNet(LayeredNet):
    """Nature DQN body (Mnih et al. 2015) with actor-critic heads."""

    CONVS = [(32, 8, 4), (64, 4, 2), (64, 3, 1)]

    def __init__(self, obs_shape, n_actions: int, **kw):
        super().__init__(obs_shape, n_actions, convs=self.CONVS, fc=512, **kw)


class MinAtarNet(LayeredNet):
    """MinAtar net (Young & Tian 2019): conv 16x3x3/1, FC 128; inputs are already 0/1."""

    CONVS = [(16, 3, 1)]

    def __init__(self, obs_shape, n_actions: int, **kw):
        kw.setdefault("obs_scale", 1.0)
        super().__init__(obs_shape, n_actions, convs=self.CONVS, fc=128, **kw)


class CA3CNet(nn.Module):
    """cA3C policy (docs/reference_notes.md §3): 4 x conv(32, 3x3, s2, SAME, ELU) -> LSTM(256) -> 3 heads."""

    recurrent = True

    def __init__(self, obs_shape, n_actions: int, obs_scale: float = 1 / 255.0, lstm: int = 256):
        super().__init__()
        self.obs_shape = tuple(obs_shape)
        self.n_actions = n_actions
        self.register_buffer("obs_scale", torch.tensor(float(obs_scale)), persistent=False)
        c, h, w = self.obs_shape
        convs = []
        for i in range(4):
            convs.append(init_layer(nn.Conv2d(c if i == 0 else 32, 32, 3, stride=2, padding=1)))
            h, w = (h + 1) // 2, (w + 1) // 2  # SAME padding, stride 2
        self.layers = nn.ModuleList(convs)
        self.layer_names = ("conv1", "conv2", "conv3", "conv4", "lstm")
        self.lstm = nn.LSTMCell(32 * h * w, lstm)
        nn.init.zeros_(self.lstm.bias_ih)
        nn.init.zeros_(self.lstm.bias_hh)
        self.hidden_dim = lstm
        self.policy = init_layer(nn.Linear(lstm, n_actions), gain=0.01)
        self.distill = init_layer(nn.Linear(lstm, n_actions), gain=0.01)
        self.value = init_layer(nn.Linear(lstm, 1), gain=1.0)

    def initial_state(self, n: int, device=None):
        z = torch.zeros(n, self.hidden_dim, device=device)
        return (z, z.clone())

    def encode(self, obs: torch.Tensor):
        h = obs.float() * self.obs_scale
        preacts = []
        for conv in self.layers:
            z = conv(h)
            preacts.append(z)
            h = F.elu(z)
        return h.flatten(1), preacts

    def _heads(self, h):
        return self.policy(h), self.value(h).squeeze(-1), self.distill(h)

    def forward(self, obs: torch.Tensor, state=None, starts=None) -> NetOut:
        """One step for N envs; `starts` [N] marks envs whose episode begins here (state zeroed)."""
        x, preacts = self.encode(obs)
        if state is None:
            state = self.initial_state(obs.shape[0], obs.device)
        if starts is not None:
            keep = (~starts).float().unsqueeze(-1)
            state = (state[0] * keep, state[1] * keep)
        hx, cx = self.lstm(x, state)
        logits, value, distill = self._heads(hx)
        return NetOut(logits, value, (hx, cx), {"distill_logits": distill, "preacts": preacts + [hx]})

    def forward_sequence(self, obs: torch.Tensor, state=None, starts=None) -> NetOut:
        """obs [T, N, ...], starts [T, N]; the conv encoder runs once on all T*N frames."""
        t, n = obs.shape[:2]
        x, _ = self.encode(obs.reshape(t * n, *obs.shape[2:]))
        x = x.reshape(t, n, -1)
        if state is None:
            state = self.initial_state(n, obs.device)
        hs = []
        for k in range(t):
            if starts is not None:
                keep = (~starts[k]).float().unsqueeze(-1)
                state = (state[0] * keep, state[1] * keep)
            state = self.lstm(x[k], state)
            hs.append(state[0])
        h = torch.stack(hs)
        logits, value, distill = self._heads(h)
        return NetOut(logits, value, state, {"distill_logits": distill})


NETS = {"a3c": A3CNet, "nature": NatureNet, "minatar": MinAtarNet, "ca3c": CA3CNet}


def net_misfit(name: str, hw) -> str | None:
    """Why net `name` cannot take frames of side hw = (h, w), or None if it can (CA3CNet's padded convs take any)."""
    convs = getattr(NETS[name], "CONVS", None)
    return conv_misfit(convs, hw) if convs else None


def check_net_fits(name: str, hw, what: str = "these frames", where: str = "net", field: str = "net") -> None:
    """A clear error, at build time, if net `name` cannot take frames of side hw = (h, w): it names the nets
    that fit (instead of torch's 'Kernel size can't be greater than actual input size' at the first step).
    `where` and `field` name the argument in the message ('a2c arguments', 'net')."""
    if name not in NETS:
        raise ValueError(f"{where}: unknown {field} '{name}'; choose one of {sorted(NETS)}")
    why = net_misfit(name, hw)
    if why:
        fits = [n for n in NETS if net_misfit(n, hw) is None]
        raise NetMisfitError(f"{where}: {field} '{name}' does not fit {what} ({hw[0]}x{hw[1]} frames): {why}; "
                             f"set {field} to one of the nets that fit: {', '.join(fits)}")


def check_net_for_game(name: str, game: str, protocol=None, where: str = "net", field: str = "net") -> None:
    """check_net_fits for the frames `game` hands out under `protocol` (common.envs.frame_hw)."""
    from common.envs import frame_hw

    check_net_fits(name, frame_hw(game, protocol), f"game {game}", where, field)


def make_net(name: str, obs_shape, n_actions: int, **kw) -> nn.Module:
    check_net_fits(name, tuple(obs_shape)[-2:], f"observations of shape {tuple(obs_shape)}", where="make_net")
    return NETS[name](obs_shape, n_actions, **kw)
