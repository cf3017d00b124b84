"""Per-environment parts against their definitions, objectives' structure checks and penalties."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from hybrid.dynamics import HybridField
from hybrid.environments import (
    CircularConvNet,
    Coda,
    EnvironmentCorrection,
    Hyper,
    Independent,
    Leads,
    OneForAll,
    OnePerEnvironment,
    PerEnvironment,
)
from hybrid.environments.layout import by_environment, is_environment_specific
from hybrid.environments.objectives import spectral_norms
from hybrid.models import MLP, ConvNet
from hybrid.physics.gray_scott import GrayScott
from hybrid.physics.lotka_volterra import LotkaVolterra
from hybrid.physics.parameters import physical_parameters


def _mlp() -> MLP:
    return MLP(2, hidden=8, depth=3, init="orthogonal", gain=1.0)


def test_layout_refuses_an_unbalanced_batch():
    assert by_environment(torch.zeros(6, 4), 3).shape == (3, 2, 4)
    with pytest.raises(ValueError, match="not 4 environments of equal size"):
        by_environment(torch.zeros(6, 4), 4)


def test_independent_is_each_environment_own_network():
    torch.manual_seed(0)
    net = Independent(_mlp(), 3)
    with torch.no_grad():
        for p in net.per_environment.values():
            p.add_(torch.randn_like(p))
    y = torch.rand(6, 5, 2)
    out = net(None, y)
    for e in range(3):
        w = {k: v[e] for k, v in net.environment_weights().items()}
        assert torch.allclose(
            out[2 * e : 2 * e + 2], functional_call(net.network, w, (None, y[2 * e : 2 * e + 2]))
        )
    assert all(is_environment_specific(n) for n, _ in net.named_parameters())


def test_independent_loops_conv_nets_like_vmapped_mlps():
    net = Independent(ConvNet(2, hidden=4, batch_norm=False), 2)
    assert not net.batched
    with torch.no_grad():
        net.per_environment["head__conv__weight"][1].normal_()
    out = net(None, torch.rand(4, 2, 8, 8))
    assert out[:2].abs().max() == 0 and out[2:].abs().max() > 0  # env 0 keeps the zero head


def test_circular_conv_net_is_the_reference_gray_scott_network():
    """The LEADS reference's ``nn.Conv2d(padding_mode="circular")`` stack with SiLU, run on the
    raw state and scaled by 1e-3, gives the same tendency; weights start at N(0, 0.1²), biases 0."""
    torch.manual_seed(0)
    net = CircularConvNet(2, hidden=16, depth=4, std=0.1, scale=1e-3)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 4 and all(float(c.bias.abs().max()) == 0 for c in convs)
    weights = torch.cat([c.weight.flatten() for c in convs])
    assert float(weights.std()) == pytest.approx(0.1, rel=0.05)
    with torch.no_grad():
        for c in convs:
            c.bias.normal_()  # a bias the check can see
    layers = []
    for c in convs:
        ref = torch.nn.Conv2d(c.in_channels, c.out_channels, 3, padding=1, padding_mode="circular")
        ref.load_state_dict(c.state_dict())
        layers += [ref, torch.nn.SiLU()]
    reference = torch.nn.Sequential(*layers[:-1])
    y = torch.rand(3, 5, 2, 8, 12)  # [E*b, W, C, ny, nx]
    expected = 1e-3 * reference(y.flatten(0, 1)).view_as(y)
    assert torch.allclose(net(None, y), expected, atol=1e-9, rtol=1e-5)


def test_hyper_starts_as_the_reference_linear_layer():
    """``W ~ U(-1/√d, 1/√d)`` (``nn.Linear(d, P)``'s default): its std is ``1/√(3d)``."""
    torch.manual_seed(0)
    for d in (2, 8):
        w = Hyper(_mlp(), 3, code_dim=d).hyper
        bound = d**-0.5
        assert float(w.abs().max()) <= bound
        assert float(w.std()) == pytest.approx(bound / 3**0.5, rel=0.05)
    assert float(Hyper(_mlp(), 3, init_bound=1e-3).hyper.abs().max()) <= 1e-3


def test_hyper_weights_are_shared_plus_code_times_w():
    torch.manual_seed(0)
    net = Hyper(_mlp(), 3, code_dim=2)
    y = torch.rand(6, 2)
    shared = {k.replace("__", "."): v for k, v in net.shared.items()}
    start = torch.cat(
        [functional_call(net.network, shared, (None, y[2 * e : 2 * e + 2])) for e in range(3)]
    )
    assert torch.allclose(net(None, y), start)  # codes at zero: the template everywhere
    with torch.no_grad():
        net.per_environment.codes.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    flat = torch.cat([v.flatten(1) for v in net.environment_weights().values()], 1)  # [E, P]
    base = torch.cat([shared[k].flatten() for k in net.shapes])
    assert torch.allclose(flat[2] - base, net.hyper.sum(1), atol=1e-6)
    assert [n for n, _ in net.named_parameters() if is_environment_specific(n)] == [
        "per_environment.codes"
    ]


def test_per_environment_parameters_match_separate_priors(float64):
    alphas, gammas = [0.25, 0.5, 1.0], [1.0, 0.75, 0.25]
    prior = PerEnvironment(LotkaVolterra(alpha=0.6, gamma=0.6), 3, ["alpha", "gamma"])
    with torch.no_grad():
        prior.per_environment.log_alpha.copy_(torch.tensor(alphas).log())
        prior.per_environment.log_gamma.copy_(torch.tensor(gammas).log())
    y = torch.rand(6, 2) + 1
    out = prior(None, y)
    for e in range(3):
        ref = LotkaVolterra(alpha=alphas[e], gamma=gammas[e]).double()(None, y[2 * e : 2 * e + 2])
        assert torch.allclose(out[2 * e : 2 * e + 2], ref)
    params = physical_parameters(prior)
    assert torch.allclose(params["per_environment.alpha"], torch.tensor(alphas))
    assert "prior.alpha" not in params and "prior.beta" in params  # β, δ stay shared


def test_per_environment_stable_step_is_the_smallest():
    prior = PerEnvironment(GrayScott(D_u=0.2), 2, ["D_u"])
    with torch.no_grad():
        prior.per_environment.log_D_u[1] = torch.tensor(0.4).log()
    assert prior.stable_dt() == pytest.approx(GrayScott(D_u=0.4).stable_dt(), rel=1e-6)


def _field(shared: bool, specific: type | None, physics=None) -> HybridField:
    s = _mlp() if shared else None
    g = specific(_mlp(), 3) if specific else None
    return HybridField(physics, EnvironmentCorrection(s, g))


@pytest.mark.parametrize(
    ("objective", "field", "message"),
    [
        (Leads(), lambda: _field(True, Hyper), "Independent"),
        (Coda(), lambda: _field(True, Independent), "Hyper"),
        (OneForAll(), lambda: _field(True, Independent), "shares everything"),
        (OnePerEnvironment(), lambda: _field(True, Independent), "no `shared`"),
        (
            OnePerEnvironment(),
            lambda: _field(False, Independent, LotkaVolterra()),
            "PerEnvironment",
        ),
    ],
)
def test_objectives_refuse_the_wrong_structure(objective, field, message):
    with pytest.raises(ValueError, match=message):
        objective.check_structure(field())


def test_leads_penalty_by_hand():
    torch.manual_seed(0)
    field = _field(True, Independent)
    g = field.correction.specific
    y = torch.rand(6, 4, 2) + 0.5  # [E*b, W, C]
    norm = (g(None, y).norm(dim=-1) / (y.norm(dim=-1) + 1e-5)).square()  # [E*b, W]
    by_env = norm.unflatten(0, (3, 2)).mean((1, 2)).sum()
    sigma = sum(
        torch.linalg.matrix_norm(w[e], ord=2)
        for w in g.environment_weights().values()
        if w.ndim == 3
        for e in range(3)
    )
    assert float(spectral_norms(g)) == pytest.approx(float(sigma), rel=1e-5)
    penalty = Leads(weight=0.1, spectral=0.01).penalty(field, y, None, torch.ones(2))
    assert float(penalty) == pytest.approx(0.1 * (float(by_env) + 0.01 * float(sigma)), rel=1e-5)


def test_coda_penalty_by_hand():
    field = _field(False, Hyper)
    h = field.correction.specific
    with torch.no_grad():
        h.per_environment.codes.fill_(0.5)
    expected = 1e-3 * h.hyper.norm(dim=1).sum() + 1e-2 * 3 * 2 * 0.25
    got = Coda(hyper_weight=1e-3, code_weight=1e-2).penalty(
        field, torch.zeros(6, 2), None, torch.ones(2)
    )
    assert float(got) == pytest.approx(float(expected), rel=1e-6)
