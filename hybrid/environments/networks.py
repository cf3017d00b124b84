"""Networks with one set of weights per environment, evaluated for all environments at once.

``Independent`` holds ``E`` independent copies of a network (LEADS's ``g_e``, and each model of
one-per-environment); ``Hyper`` holds CoDA's ``θ_e = θ_c + W ξ_e``. Both call one template
network with each environment's weights (``torch.func.functional_call``), batched over
environments by ``torch.vmap`` (3x faster than a loop for the LV MLPs), or environment by
environment for conv nets, whose channels-last memory ``vmap`` does not support.
``EnvironmentCorrection`` sums a shared network and a
per-environment one. ``CircularConvNet`` is the LEADS reference's Gray-Scott network.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.func import functional_call

from hybrid.environments.layout import by_environment
from hybrid.models.activations import activation as make_activation
from hybrid.models.conv import GridConv
from hybrid.models.sizes import require_positive


def _as_buffers(module: nn.Module) -> dict[str, Tensor]:
    """Turn the parameters of ``module`` into (non-persistent) buffers, and return their values
    by dotted name: the template's weights are placeholders that each call replaces."""
    values = {}
    for name, p in list(module.named_parameters()):
        owner_name, _, leaf = name.rpartition(".")
        owner = module.get_submodule(owner_name)
        del owner._parameters[leaf]
        owner.register_buffer(leaf, p.detach().clone(), persistent=False)
        values[name] = p.detach().clone()
    return values


class _PerEnvironmentNetwork(nn.Module):
    """``forward(t, y)``: rows of environment ``e`` through the template with weights ``θ_e``."""

    def __init__(self, network: nn.Module, n_environments: int) -> None:
        super().__init__()
        if n_environments < 1:
            raise ValueError(f"n_environments must be positive, got {n_environments}")
        self.network, self.n_environments = network, n_environments
        self.batched = not any(isinstance(m, nn.Conv2d) for m in network.modules())
        self.shapes = {k: v.shape for k, v in network.named_parameters()}

    def environment_weights(self) -> dict[str, Tensor]:
        """``{name: [E, *shape]}``, the template's weights for each environment."""
        raise NotImplementedError

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        ys = by_environment(y, self.n_environments)  # [E, b, ...]
        buffers, weights = dict(self.network.named_buffers()), self.environment_weights()

        def one(w: dict[str, Tensor], y_e: Tensor) -> Tensor:
            return functional_call(self.network, {**buffers, **w}, (t, y_e))

        if self.batched:
            return torch.vmap(one)(weights, ys).flatten(0, 1)
        return torch.cat(
            [one({k: v[e] for k, v in weights.items()}, ye) for e, ye in enumerate(ys)]
        )


class Independent(_PerEnvironmentNetwork):
    """``E`` independent copies of ``network``, each started from its initialisation.

    Weights ``per_environment.<name>``: ``[E, *shape]`` (dots in names become ``__``).

    Args:
        network: the template (e.g. ``hybrid.models.MLP``), a ``forward(t, y)`` module.
        n_environments: ``E``.
    """

    def __init__(self, network: nn.Module, n_environments: int) -> None:
        super().__init__(network, n_environments)
        start = _as_buffers(network)
        self.per_environment = nn.ParameterDict(
            {
                k.replace(".", "__"): nn.Parameter(v.expand(n_environments, *v.shape).clone())
                for k, v in start.items()
            }
        )

    def environment_weights(self) -> dict[str, Tensor]:
        return {k.replace("__", "."): v for k, v in self.per_environment.items()}


class Hyper(_PerEnvironmentNetwork):
    """CoDA's context-informed network: weights ``θ_e = θ_c + W ξ_e``.

    ``θ_c`` (``shared.<name>``) starts at the template's initialisation, ``W`` (``hyper``:
    ``[P, d]``, P the template's parameter count) at ``U(-b, b)``, and the codes
    ``ξ`` (``per_environment.codes``: ``[E, d]``) at zero, so that training starts from the
    template for every environment. Adapting to a new environment trains ``ξ_new`` only.
    ``b = 1/√d`` is the reference's (its ``nn.Linear(d, P)``): ``∂θ_e/∂ξ_e = W`` and
    ``∂θ_e/∂W = ξ_e``, so with both near zero (as ``b = 1e-2`` was) neither moves, and the codes
    stay too weak to adapt.

    Args:
        network: the template, a ``forward(t, y)`` module.
        n_environments: ``E``.
        code_dim: ``d`` (CoDA: 2).
        init_bound: ``b`` (default ``1/√d``).
    """

    def __init__(
        self,
        network: nn.Module,
        n_environments: int,
        code_dim: int = 2,
        init_bound: float | None = None,
    ) -> None:
        super().__init__(network, n_environments)
        if code_dim < 1:
            raise ValueError(f"code_dim must be positive, got {code_dim}")
        start = _as_buffers(network)
        self.shared = nn.ParameterDict(
            {k.replace(".", "__"): nn.Parameter(v) for k, v in start.items()}
        )
        n = sum(math.prod(s) for s in self.shapes.values())
        bound = code_dim**-0.5 if init_bound is None else init_bound
        self.hyper = nn.Parameter(torch.empty(n, code_dim).uniform_(-bound, bound))
        self.per_environment = nn.Module()
        self.per_environment.codes = nn.Parameter(torch.zeros(n_environments, code_dim))

    def environment_weights(self) -> dict[str, Tensor]:
        shift = self.per_environment.codes @ self.hyper.T  # [E, P]
        out, start = {}, 0
        for name, shape in self.shapes.items():
            size = math.prod(shape)
            base = self.shared[name.replace(".", "__")]
            out[name] = base + shift[:, start : start + size].view(-1, *shape)
            start += size
        return out


class EnvironmentCorrection(nn.Module):
    """``F_a(y) = f(y) + g_e(y)``: a ``shared`` network and a ``specific`` per-environment one
    (:class:`Independent` or :class:`Hyper`); either may be None. ``y``: ``[E*b, *S]``.

    Args:
        shared: ``f``, the same for every environment.
        specific: ``g_e``, one per environment.
    """

    def __init__(self, shared: nn.Module | None = None, specific: nn.Module | None = None) -> None:
        super().__init__()
        if shared is None and specific is None:
            raise ValueError("EnvironmentCorrection needs a `shared` or a `specific` network")
        self.shared, self.specific = shared, specific

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        terms = [f(t, y) for f in (self.shared, self.specific) if f is not None]
        return sum(terms[1:], terms[0])


class CircularConvNet(nn.Module):
    """``dy/dt = s · conv_d(σ(… σ(conv_1(y))))``: the LEADS reference's Gray-Scott network.

    ``depth`` circular 3x3 convolutions ``C -> hidden -> … -> hidden -> C`` with ``σ`` between
    them, on the raw state (no normalisation), every weight drawn from ``N(0, std²)``, every bias
    zero, the output times ``scale`` (the reference: depth 4, hidden 64, Swish, std 0.1,
    scale 1e-3). ``t`` is unused.

    Args:
        channels: state channels ``C``.
        hidden: width of the hidden layers.
        depth: number of convolutions (at least 2).
        activation: ``"silu"`` (default; the reference's Swish has a learnt slope near 1 and a
            1/1.1 factor), ``"gelu"``, ``"tanh"`` or ``"relu"``.
        std: standard deviation of the initial weights.
        scale: ``s``, the output factor.
    """

    def __init__(
        self,
        channels: int,
        hidden: int = 64,
        depth: int = 4,
        activation: str = "silu",
        std: float = 0.1,
        scale: float = 1.0e-3,
    ) -> None:
        super().__init__()
        require_positive("CircularConvNet", channels=channels, hidden=hidden)
        if depth < 2:
            raise ValueError(f"depth must be at least 2 (a hidden and a last layer), got {depth}")
        widths = [channels] + [hidden] * (depth - 1) + [channels]
        layers: list[nn.Module] = []
        for w_in, w_out in zip(widths[:-1], widths[1:], strict=True):
            conv = GridConv(w_in, w_out, (True, True))
            nn.init.normal_(conv.conv.weight, 0.0, std)
            nn.init.zeros_(conv.conv.bias)
            layers += [conv, make_activation(activation)]
        self.net = nn.Sequential(*layers[:-1])
        self.scale = scale

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        """``y: [..., C, ny, nx]`` -> ``dy/dt`` of the same shape."""
        lead, field = y.shape[:-3], y.shape[-3:]
        z = y.reshape(-1, *field).contiguous(memory_format=torch.channels_last)  # see conv.py
        out = (self.net(z) * self.scale).contiguous()
        return out.reshape(*lead, *field)
