"""A correction that reads prescribed forcings: extra input channels, interpolated in time.

Forcing variables (a wind stress, a heat flux, a scenario's greenhouse gases) come from the data
files and are never forecast: ``TrajectoryDataModule(forcings=[...])`` serves each window's
forcing frames, normalised by their training mean and spread, as the last element of the batch
``(t, y[, date], F)`` with ``F``: ``[B, W, n, *grid]``. :func:`observe_forcings` hands them to
the parts that read them (:class:`ReadsForcing`) before the rollout, as
:func:`hybrid.models.seasonal.observe_dates` hands the date. At a solver time ``t`` between
frames ``t_k ≤ t ≤ t_{k+1}`` (the rk4 stages fall between frames) the forcing is

    F(t) = F_k + (t - t_k) / (t_{k+1} - t_k) · (F_{k+1} - F_k),

exact for a forcing linear in time over each step. In ``hybrid evaluate`` the forecasts read the
test file's forcing over the whole lead: the forcing is prescribed, as in a reanalysis-driven
or scenario run, not forecast.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from hybrid.models.normalisation import ChannelScaler
from hybrid.models.parts import build_part
from hybrid.physics.grid import Grid


@runtime_checkable
class ReadsForcing(Protocol):
    """A part of the field that reads the forcing frames of each window of the batch."""

    def observe_forcing(self, frames: Tensor, t: Tensor) -> None: ...


def reads_forcing(field: nn.Module) -> bool:
    """Whether any part of ``field`` reads forcings."""
    return any(isinstance(m, ReadsForcing) for m in field.modules())


def forcing_of(batch: tuple[Tensor, ...]) -> Tensor | None:
    """The forcing frames of a batch ``(t, y[, date][, F])``: its last element when that has a
    frame axis (``F``: ``[B, W, n, *grid]``, three dims or more; a date is ``[B, 2]``)."""
    return batch[-1] if len(batch) > 2 and batch[-1].ndim >= 3 else None


def observe_forcings(field: nn.Module, batch: tuple[Tensor, ...], t: Tensor) -> None:
    """Give each part of ``field`` that reads forcings the frames of the windows it forecasts.

    ``batch``: ``(t_w [B, W], y, [date,] F [B, W, n, *grid])``; ``t``: ``[B, W']`` the rollout's
    relative times, its last ``W' ≤ W`` frames (:func:`hybrid.flow.observe_past` keeps the last
    ones). Nothing happens when no part reads forcings.

    Raises:
        ValueError: a part reads forcings but the batch has none.
    """
    if not reads_forcing(field):
        return
    frames = forcing_of(batch)
    if frames is None:
        raise ValueError(
            "the correction reads forcings, but the data serve none: set `data.forcings: "
            "[names]` (TrajectoryDataModule(forcings=[...]))"
        )
    give_forcings(field, frames[:, frames.shape[1] - t.shape[1] :], t[0])


def give_forcings(field: nn.Module, frames: Tensor, t: Tensor) -> None:
    """Hand every part of ``field`` that reads forcings ``frames``: ``[B, W, n, *grid]`` at the
    relative times ``t``: ``[W]`` (s)."""
    for m in field.modules():
        if isinstance(m, ReadsForcing):
            m.observe_forcing(frames, t)


def interpolate(frames: Tensor, t_frames: Tensor, t: Tensor | float) -> Tensor:
    """Frames ``[B, W, ...]`` at times ``t_frames``: ``[W]`` (increasing) linearly interpolated
    at ``t``: ``[B, ...]``; held at the end frames outside ``[t_0, t_{W-1}]``."""
    if frames.shape[1] == 1:
        return frames[:, 0]
    tf = t_frames.double()
    t = torch.as_tensor(t, dtype=torch.float64, device=tf.device).clamp(tf[0], tf[-1])
    k = int(torch.searchsorted(tf, t.reshape(1), right=True).clamp(1, len(tf) - 1)) - 1
    w = float((t - tf[k]) / (tf[k + 1] - tf[k]))
    return frames[:, k] + w * (frames[:, k + 1] - frames[:, k])


class ForcedScaler(ChannelScaler):
    """A :class:`ChannelScaler` of ``C + n`` channels whose statistics are given for the ``C``
    state channels only: the ``n`` forcing channels, normalised by the data module, keep mean 0,
    spread 1 and output scale 1 (their outputs are dropped)."""

    def __init__(self, scaler: ChannelScaler, forcings: int) -> None:
        super().__init__(scaler.channels, scaler.channel_dim)
        self.forcings = forcings

    def set_statistics(self, mean, std, out_scale) -> None:
        """``mean``, ``std``, ``out_scale``: ``[C]`` of the state, padded for the forcing."""

        def padded(v, fill: float) -> Tensor:
            v = torch.as_tensor(v, dtype=self.mean.dtype)
            return torch.cat([v, v.new_full((self.forcings,), fill)])  # [C + n]

        super().set_statistics(padded(mean, 0.0), padded(std, 1.0), padded(out_scale, 1.0))


def pad_scalers(net: nn.Module, forcings: int) -> None:
    """Replace every :class:`ChannelScaler` of ``net`` by a :class:`ForcedScaler` (same buffers,
    so the same state-dict keys)."""
    for name, m in list(net.named_modules()):
        if isinstance(m, ChannelScaler) and not isinstance(m, ForcedScaler):
            parent = net.get_submodule(name.rpartition(".")[0])
            setattr(parent, name.rpartition(".")[2], ForcedScaler(m, forcings))


def build_net(net: Callable[[Grid], nn.Module] | nn.Module, grid: Grid | None) -> nn.Module:
    """``net`` as given, or built with ``grid`` when its class takes one: from a factory
    (:func:`hybrid.models.parts.build_part`), or from the ``class_path`` and ``init_args`` of a
    config, which the command line leaves unbuilt inside a part that itself awaits the grid."""
    spec = net.as_dict() if hasattr(net, "as_dict") else net  # a jsonargparse namespace
    if isinstance(spec, dict) and "class_path" in spec:
        module, _, name = spec["class_path"].rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        args = {k: v for k, v in (spec.get("init_args") or {}).items() if k != "grid"}
        return build_part(functools.partial(cls, **args), grid)
    return build_part(net, grid)


class Forced(nn.Module):
    """``F_a(t, y) = net(t, [y, F(t)])[:C]``: a correction network fed the forcing.

    ``net`` maps ``C + n`` channels to ``C + n`` (e.g. ``ResNet(channels=C + n)``, ``MLP(
    state_dim=C + n)``); its input is the state with the ``n`` forcing channels ``F(t)``
    appended on the channel axis (interpolated in time between the window's frames,
    :func:`interpolate`), and its first ``C`` outputs are the correction (the forcing's own
    outputs are dropped). Its :class:`ChannelScaler` is given the state's statistics for the
    first ``C`` channels and the identity for the forcing's, which the data module has
    normalised already. It reads the forcing (:class:`ReadsForcing`): each rollout is preceded
    by :func:`observe_forcings`.

    ``forward(t, y)``: with ``t`` a time of the rollout, ``y``: ``[B, C, *grid]``; with ``t``
    None (the correction along a window's true states), ``y``: ``[B, W, C, *grid]`` at the
    window's frames (or ``[R, C, *grid]``, the first ``R`` of those frames flattened
    window-major, as ``hybrid evaluate`` samples them).

    Args:
        net: the network, or its class awaiting the data's grid (``class_path`` in a config).
        forcings: ``n``, the number of forcing variables (``len(data.forcings)``).
        grid: the data's grid, passed on to ``net`` when it is built here.
    """

    def __init__(
        self,
        net: Callable[[Grid], nn.Module] | nn.Module,
        forcings: int = 1,
        grid: Grid | None = None,
    ) -> None:
        super().__init__()
        if forcings < 1:
            raise ValueError(f"forcings must be at least 1, got {forcings}")
        self.net, self.forcings = build_net(net, grid), forcings
        pad_scalers(self.net, forcings)
        self.frames = self.times = None  # set by observe_forcing

    def observe_forcing(self, frames: Tensor, t: Tensor) -> None:
        """``frames``: ``[B, W, n, *grid]`` the window's forcing; ``t``: ``[W]`` their relative
        times (s)."""
        if frames.shape[2] != self.forcings:
            raise ValueError(
                f"Forced was built for {self.forcings} forcing variables; the data serve "
                f"{frames.shape[2]}: set forcings to len(data.forcings)"
            )
        self.frames, self.times = frames, t

    def forcing_at(self, t: Tensor | None, lead: tuple[int, ...]) -> Tensor:
        """The forcing of each row of the state, ``[*lead, n, *grid]``."""
        if self.frames is None:
            raise ValueError("Forced needs the windows' forcing: call observe_forcings first")
        if t is None:
            f = self.frames
            if len(lead) == 1 and lead[0] <= f.shape[0] * f.shape[1]:
                f = f.flatten(0, 1)[: lead[0]]  # window-major, the first rows
        else:
            f = interpolate(self.frames, self.times, t)  # [B, n, *grid]
        if tuple(f.shape[: len(lead)]) != lead:
            raise ValueError(
                f"Forced holds the forcing of states {tuple(f.shape[: len(lead)])}, got states "
                f"{lead}: observe the forcing of these windows first (the warm start's stretches "
                "carry none: set model.warm_start false or freeze the prior)"
            )
        return f

    def forward(self, t: Tensor | None, y: Tensor) -> Tensor:
        """``y: [*lead, C, *grid]`` -> ``dy/dt`` of the same shape."""
        axis = y.ndim - (self.frames.ndim - 2 if self.frames is not None else 1)  # channels
        f = self.forcing_at(t, tuple(y.shape[:axis])).to(y)
        out = self.net(t, torch.cat([y, f], axis))  # [*lead, C + n, *grid]
        return out.narrow(axis, 0, y.shape[axis])
