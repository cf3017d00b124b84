"""Correction networks: zero start, shapes, geometry (periodic shifts, walls, masks), scaling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from hybrid.dynamics import HybridField
from hybrid.models import MLP, ChannelScaler, ResNet, UNet
from hybrid.physics.grid import Grid

NY, NX, C = 8, 16, 2


class Decay(nn.Module):
    """dy/dt = -y."""

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return -y


def box(periodic: tuple[bool, bool] = (True, True), active: np.ndarray | None = None) -> Grid:
    return Grid.regular_box(NX, NY, 1.0, periodic=periodic, active=active)


def build(kind: str, grid: Grid | None = None) -> nn.Module:
    if kind == "mlp":
        return MLP(C, hidden=8)
    if kind == "resnet":
        return ResNet(C, hidden=4, blocks=2, grid=grid)
    return UNet(C, hidden=4, levels=2, grid=grid)


def state(kind: str, *lead: int) -> Tensor:
    return torch.randn(*lead, C) if kind == "mlp" else torch.randn(*lead, C, NY, NX)


def randomise_head(net: nn.Module) -> nn.Module:
    """Move the zero-initialised last layer away from zero, so that tests are not trivial."""
    with torch.no_grad():
        for p in net.head.parameters():
            p.normal_(0.0, 0.3)
    return net


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny convolutions: intra-op threads only contend (about 5x slower on a busy 2-core box)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


KINDS = ["mlp", "resnet", "unet"]
FIELD_NETS = ["resnet", "unet"]


@pytest.mark.parametrize("kind", KINDS)
def test_zero_init_then_learns(kind, rng):
    net, y = build(kind), state(kind, 3)
    assert torch.equal(net(None, y), torch.zeros_like(y))
    loss = (net(None, y) - y).square().mean()
    loss.backward()
    assert all(p.grad.abs().sum() > 0 for p in net.head.parameters())
    torch.optim.SGD(net.parameters(), lr=0.1).step()
    assert net(None, y).abs().max() > 0


@pytest.mark.parametrize("kind", KINDS)
def test_untrained_hybrid_is_the_prior(kind, rng):
    field, y = HybridField(Decay(), build(kind)), state(kind, 3)
    assert torch.equal(field(torch.tensor(0.0), y), -y)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("lead", [(3,), (2, 4)], ids=["batch", "batch_time"])
def test_shape_preserved(kind, lead, rng):
    net, y = randomise_head(build(kind)), state(kind, *lead)
    dydt = net(None, y)
    assert dydt.shape == y.shape
    # leading dims are only flattened: each state along them is treated on its own
    assert torch.allclose(dydt[-1], net(None, y[-1:])[0], atol=1e-6)


@pytest.mark.parametrize("kind", FIELD_NETS)
def test_periodic_shift_equivariance(kind, rng):
    net, y = randomise_head(build(kind, box())), state(kind, 2)
    shift = (4, 8)  # multiples of 2**levels for the UNet
    rolled = net(None, torch.roll(y, shift, dims=(-2, -1)))
    assert torch.allclose(rolled, torch.roll(net(None, y), shift, dims=(-2, -1)), atol=1e-6)


@pytest.mark.parametrize("kind", FIELD_NETS)
def test_walls_break_shift_equivariance(kind, rng):
    # walls in y, periodic in x: equivariant along x only
    net, y = randomise_head(build(kind, box((False, True)))), state(kind, 2)
    along_x = net(None, torch.roll(y, 8, dims=-1))
    assert torch.allclose(along_x, torch.roll(net(None, y), 8, dims=-1), atol=1e-6)
    along_y = net(None, torch.roll(y, 4, dims=-2))
    assert not torch.allclose(along_y, torch.roll(net(None, y), 4, dims=-2), atol=1e-3)


@pytest.mark.parametrize("periodic_x", [True, False])
def test_padding_wraps_only_on_periodic_axes(periodic_x, rng):
    # ResNet's receptive field is 6 cells: column 0 sees column nx-1 only across a periodic seam
    net = randomise_head(build("resnet", box((True, periodic_x))))
    y = state("resnet", 1)
    y2 = y.clone()
    y2[..., -1] += 1.0
    changed = (net(None, y2) - net(None, y))[..., 0].abs().max() > 1e-4
    assert changed == periodic_x


@pytest.mark.parametrize("kind", FIELD_NETS)
def test_inactive_cells_neither_read_nor_written(kind, rng):
    active = np.ones((NY, NX), dtype=bool)
    active[2:5, 3:9] = False
    active[:, -1] = False
    net = randomise_head(build(kind, box((False, True), active)))
    y = state(kind, 2)
    out = net(None, y)
    inactive = torch.from_numpy(~active)
    assert torch.equal(out[..., inactive], torch.zeros_like(out[..., inactive]))
    assert out[..., ~inactive].abs().min() > 0
    for garbage in (1e6, math.nan):
        y2 = y.clone()
        y2[..., inactive] = garbage
        assert torch.equal(net(None, y2), out)


@pytest.mark.parametrize("kind", KINDS)
def test_no_unused_parameters(kind, rng):
    net = randomise_head(build(kind, None if kind == "mlp" else box((False, True))))
    net(None, state(kind, 2)).square().sum().backward()
    unused = [name for name, p in net.named_parameters() if p.grad is None or not p.grad.any()]
    assert unused == []


def test_resnet_gradcheck(float64, rng):
    active = np.ones((4, 6), dtype=bool)
    active[1, 2] = False
    grid = Grid.regular_box(6, 4, 1.0, periodic=(False, True), active=active)
    net = randomise_head(ResNet(2, hidden=3, blocks=1, grid=grid))
    net.scaler.set_statistics([0.5, -1.0], [2.0, 0.5], [3.0, 0.25])
    y = torch.randn(1, 2, 4, 6, requires_grad=True)
    assert torch.autograd.gradcheck(lambda y: net(None, y), (y,))


def test_scaler_values(float64):
    scaler = ChannelScaler(2, -3)
    scaler.set_statistics([1.0, -2.0], [2.0, 4.0], [10.0, 0.5])
    y = torch.stack((torch.full((3, 2), 5.0), torch.full((3, 2), 6.0)))  # [C, ny, nx]
    z = scaler.normalise(y)
    assert torch.equal(z[0], torch.full((3, 2), 2.0)) and torch.equal(z[1], torch.full((3, 2), 2.0))
    out = scaler.scale_output(z)
    assert torch.equal(out[0], torch.full((3, 2), 20.0))
    assert torch.equal(out[1], torch.full((3, 2), 1.0))
    last = ChannelScaler(2, -1)
    last.set_statistics([1.0, -2.0], [2.0, 4.0], [10.0, 0.5])
    assert torch.equal(last.normalise(torch.tensor([[5.0, 6.0]])), torch.tensor([[2.0, 2.0]]))
    assert torch.equal(last.scale_output(torch.tensor([2.0, 2.0])), torch.tensor([20.0, 1.0]))


@pytest.mark.parametrize("kind", KINDS)
def test_statistics_travel_with_state_dict(kind, rng):
    net = randomise_head(build(kind))
    net.scaler.set_statistics([0.5, -1.0], [2.0, 0.5], [3.0, 0.25])
    fresh = build(kind)
    y = state(kind, 2)
    assert not torch.allclose(fresh(None, y), net(None, y))
    fresh.load_state_dict(net.state_dict())
    assert torch.equal(fresh.scaler.std, torch.tensor([2.0, 0.5]))
    assert torch.equal(fresh(None, y), net(None, y))


@pytest.mark.parametrize(
    ("stats", "match"),
    [
        (([0.0], [1.0, 1.0], [1.0, 1.0]), r"mean must have shape \(2,\), got \(1,\)"),
        (([0.0, 0.0], [[1.0, 1.0]], [1.0, 1.0]), r"std must have shape \(2,\), got \(1, 2\)"),
        (([0.0, 0.0], [1.0, 0.0], [1.0, 1.0]), "std must be positive"),
        (([0.0, 0.0], [1.0, 1.0], [-1.0, 1.0]), "out_scale must be positive"),
        (([0.0, math.nan], [1.0, 1.0], [1.0, 1.0]), "mean must be finite"),
    ],
)
def test_scaler_rejects_bad_statistics(stats, match):
    scaler = ChannelScaler(2, -1)
    with pytest.raises(ValueError, match=match):
        scaler.set_statistics(*stats)
    assert torch.equal(scaler.std, torch.ones(2))  # nothing half-set


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: ChannelScaler(0, -1), "channels must be positive, got 0"),
        (lambda: ChannelScaler(2, 1), "channel_dim must be negative"),
        (lambda: MLP(0), "state_dim must be positive, got 0"),
        (lambda: MLP(2, depth=0), "depth must be positive, got 0"),
        (lambda: ResNet(2, hidden=-1), "hidden must be positive, got -1"),
        (lambda: ResNet(2, blocks=0), "blocks must be positive, got 0"),
        (lambda: UNet(0), "channels must be positive, got 0"),
        (lambda: UNet(2, levels=0), "levels must be positive, got 0"),
        (
            lambda: UNet(2, levels=2, grid=Grid.regular_box(10, 8, 1.0)),
            r"divisible by 4, got grid shape \(ny, nx\) = \(8, 10\)",
        ),
    ],
)
def test_constructor_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_unet_without_grid_checks_shape_in_forward():
    with pytest.raises(ValueError, match=r"divisible by 8, got grid shape \(ny, nx\) = \(8, 12\)"):
        UNet(2, hidden=4, levels=3)(None, torch.zeros(1, 2, 8, 12))


def test_position_channels_let_the_resnet_depend_on_where_it_is():
    """With coords, a uniform input can give a position-dependent output (a source pattern);
    the plain net cannot (shift equivariance), and the channels are seamless where periodic."""
    from hybrid.models.conv import position_channels
    from hybrid.physics.grid import Grid

    grid = Grid.box(np.arange(8.0), np.arange(6.0), periodic=(False, True))
    pos = position_channels(grid.shape, grid.periodic)
    assert pos.shape == (3, 6, 8)  # y ramp; sin, cos of x
    assert pos[0, 0, 0] == -1 and pos[0, -1, 0] == 1
    torch.testing.assert_close(pos[1, 0], torch.sin(2 * torch.pi * torch.arange(8) / 8))
    torch.manual_seed(0)
    for coords, varies in ((True, True), (False, False)):
        net = ResNet(1, hidden=4, blocks=1, grid=Grid.regular_box(8, 8, 1.0), coords=coords)
        nn.init.normal_(net.head.conv.weight)
        out = net(None, torch.ones(1, 1, 8, 8))
        assert bool(out.std() > 1e-6) is varies
    with pytest.raises(ValueError, match="coords=True needs the grid"):
        ResNet(1, coords=True)


@pytest.mark.parametrize("activation, alive", [("relu", False), ("gelu", True), ("silu", True)])
def test_a_net_pushed_negative_dies_only_with_relu(activation, alive):
    """Every hidden unit at -2 on all data (what one large early step can do): the head of a ReLU
    net then gets no input and no gradient, so the correction stays zero for good; GELU and SiLU
    still pass a gradient."""
    net = ResNet(1, hidden=4, blocks=1, activation=activation)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net.lift.conv.bias.fill_(-2.0)
    net(None, torch.randn(2, 1, 8, 8)).sum().backward()
    head_grad = net.head.conv.weight.grad.abs().sum()
    assert (head_grad > 0) == alive


def test_unknown_activation_is_a_clear_error():
    for make in (lambda: ResNet(1, activation="swish"), lambda: MLP(2, activation="swish")):
        with pytest.raises(ValueError, match="unknown activation 'swish'"):
            make()


def test_mlp_official_init_is_orthogonal_with_gain_and_raw_io():
    """The reference pendulum net: W Wᵀ = gain² I (orthogonal rows, gain 0.2), zero biases, and
    no normalisation: the output is the plain MLP of the raw state."""
    net = MLP(2, hidden=200, init="orthogonal", gain=0.2, normalise=False)
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 3
    for layer in linears:
        w = layer.weight.detach()
        small = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        torch.testing.assert_close(small, 0.04 * torch.eye(small.shape[0]), atol=1e-5, rtol=0)
        assert not layer.bias.detach().any()
    y = torch.randn(5, 2)
    expected = linears[2](torch.relu(linears[1](torch.relu(linears[0](y)))))
    torch.testing.assert_close(net(None, y), expected)
    with pytest.raises(ValueError, match="init must be"):
        MLP(2, init="xavier")


# -- ConvNet (APHYNITY's estimator) ---------------------------------------------------------


def test_convnet_equals_the_papers_estimator_with_circular_padding(float64):
    """Same weights: ConvNet == conv-BN-ReLU-conv-BN-ReLU-conv on a circularly padded field."""
    from hybrid.models import ConvNet

    net = ConvNet(C, hidden=4)
    torch.nn.init.normal_(net.head.conv.weight)
    convs = [m.conv for m in net.modules() if hasattr(m, "periodic") and hasattr(m, "conv")]
    convs = [c for c in convs if isinstance(c, nn.Conv2d)]
    assert [c.bias is None for c in convs] == [True, True, False]

    def paper(x: Tensor) -> Tensor:
        for i, conv in enumerate(convs):
            x = conv(torch.nn.functional.pad(x, (1, 1, 1, 1), mode="circular"))
            if i < 2:
                x = torch.relu(torch.nn.functional.batch_norm(x, None, None, training=True))
        return x

    y = torch.randn(3, 5, C, NY, NX)
    torch.testing.assert_close(net(None, y), paper(y.flatten(0, 1)).view_as(y))


def test_convnet_reference_options_are_the_reference_estimator(float64):
    """``padding="zeros", init="default", normalise=False`` is ``ConvNetEstimator(2, 16)`` of the
    reference code layer for layer: on copied weights the outputs agree on a periodic grid (zero
    padding across the seam too), the last layer is not zero, and the data's statistics, which
    training sets on every ``ChannelScaler``, leave the raw network unchanged."""
    from hybrid.models import ChannelScaler, ConvNet

    torch.manual_seed(0)
    net = ConvNet(2, hidden=16, padding="zeros", init="default", normalise=False)
    reference = nn.Sequential(
        nn.Conv2d(2, 16, 3, padding=1, bias=False),
        nn.BatchNorm2d(16, track_running_stats=False),
        nn.ReLU(True),
        nn.Conv2d(16, 16, 3, padding=1, bias=False),
        nn.BatchNorm2d(16, track_running_stats=False),
        nn.ReLU(True),
        nn.Conv2d(16, 2, 3, padding=1),
    ).double()
    ours = [m.conv for m in net.modules() if isinstance(getattr(m, "conv", None), nn.Conv2d)]
    theirs = [m for m in reference if isinstance(m, nn.Conv2d)]
    for a, b in zip(ours, theirs, strict=True):
        b.load_state_dict(a.state_dict())
    assert ours[-1].weight.abs().max() > 0 and ours[-1].bias.abs().max() > 0
    assert not any(isinstance(m, ChannelScaler) for m in net.modules())
    y = torch.randn(3, 2, NY, NX)
    torch.testing.assert_close(net(None, y), reference(y))
    circular = ConvNet(2, hidden=16, init="default", normalise=False)
    circular.load_state_dict(net.state_dict())
    assert (circular(None, y) - net(None, y))[..., 0, :].abs().max() > 1e-3  # the seam differs
    with pytest.raises(ValueError, match="padding must be one of"):
        ConvNet(2, padding="reflect")
    with pytest.raises(ValueError, match="init must be one of"):
        ConvNet(2, init="orthogonal")


def test_convnet_starts_at_zero_and_gets_gradients():
    from hybrid.models import ConvNet

    net = ConvNet(C, hidden=4)
    y = torch.randn(2, C, NY, NX)
    assert torch.equal(net(None, y), torch.zeros_like(y))
    net(None, y).sum().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_convnet_rejects_bad_sizes():
    from hybrid.models import ConvNet

    with pytest.raises(ValueError, match="depth must be at least 2"):
        ConvNet(2, depth=1)
    with pytest.raises(ValueError, match="hidden must be positive, got 0"):
        ConvNet(2, hidden=0)


def test_a_fully_active_grid_is_not_masked_on_the_cpu():
    from hybrid.models.conv import needs_mask

    assert not needs_mask(None)
    assert not needs_mask(torch.ones(4, 4, dtype=torch.bool))
    partial = torch.ones(4, 4, dtype=torch.bool)
    partial[0, 0] = False
    assert needs_mask(partial)
    assert needs_mask(torch.ones(4, 4, dtype=torch.bool, device="meta"))  # no host sync there
