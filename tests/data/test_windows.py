"""TrajectoryWindows: counts, shapes, relative times, slicing and invalid frames."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hybrid.data.windows import TrajectoryWindows


def _data(n: int, length: int, grid: tuple[int, ...] = (), channels: int = 2):
    """``y[n, k, c, ...] = 1000 n + 10 k + c`` (plus a cell index on grids): every value says
    where it came from. Times start at 100 s with a step of 0.5 s."""
    y = torch.zeros(n, length, channels, *grid)
    y += 1000 * torch.arange(n).view(-1, *[1] * (y.ndim - 1))
    y += 10 * torch.arange(length).view(1, -1, *[1] * (y.ndim - 2))
    y += torch.arange(channels).view(1, 1, -1, *[1] * len(grid))
    if grid:
        y += 0.001 * torch.arange(math.prod(grid)).view(1, 1, 1, *grid)
    t = 100.0 + 0.5 * torch.arange(length, dtype=torch.float64)
    return y, t


@pytest.mark.parametrize(
    "n, length, window, stride",
    [(1, 10, 2, 1), (3, 10, 4, 1), (3, 10, 4, 3), (2, 7, 7, 1), (2, 7, 7, 5), (4, 9, 3, 4)],
)
def test_number_of_windows(n, length, window, stride):
    y, t = _data(n, length)
    windows = TrajectoryWindows(y, t, window, stride)
    assert len(windows) == n * math.floor((length - window) / stride + 1)
    assert windows.n_dropped == 0


@pytest.mark.parametrize("grid", [(), (3,), (4, 5)])
@pytest.mark.parametrize("window", [2, 5])
def test_item_shapes_and_relative_times(grid, window):
    y, t = _data(2, 8, grid, channels=3)
    windows = TrajectoryWindows(y, t, window, stride=2)
    for i in range(len(windows)):
        ti, yi = windows[i]
        assert ti.shape == (window,) and yi.shape == (window, 3, *grid)
        assert ti.dtype == torch.float32 and yi.dtype == torch.float32
        assert ti[0] == 0
        torch.testing.assert_close(ti, 0.5 * torch.arange(window, dtype=torch.float32))


def test_items_are_the_right_slices():
    y, t = _data(2, 6, (2, 2))
    windows = TrajectoryWindows(y, t, window=3, stride=2)
    # starts 0, 2 (4 would need frames 4..6) on trajectories 0 then 1
    assert windows.index == [(0, 0), (0, 2), (1, 0), (1, 2)]
    for i, (n, s) in enumerate(windows.index):
        _, yi = windows[i]
        assert torch.equal(yi, y[n, s : s + 3])
    _, last = windows[3]
    assert last[0, 1, 0, 0].item() == 1000 + 20 + 1  # trajectory 1, frame 2, channel 1


def test_windows_of_an_array_sliced_lazily():
    y, t = _data(2, 5)
    windows = TrajectoryWindows(y.numpy(), t, window=2, stride=3)
    assert len(windows) == 4
    _, yi = windows[3]
    assert isinstance(yi, torch.Tensor) and torch.equal(yi, y[1, 3:5])


@pytest.mark.parametrize(
    "invalid, window, stride, kept, dropped",
    [
        # T = 8, W = 3, s = 1: starts 0..5, 6 windows per trajectory.
        ([], 3, 1, [(0, s) for s in range(6)] + [(1, s) for s in range(6)], 0),
        # frame 3 of trajectory 0 kills starts 1, 2, 3
        ([(0, 3)], 3, 1, [(0, 0), (0, 4), (0, 5)] + [(1, s) for s in range(6)], 3),
        # frame 0 of trajectory 1 kills start 0 only; frame 7 of trajectory 0 kills start 5
        ([(1, 0), (0, 7)], 3, 1, [(0, s) for s in range(5)] + [(1, s) for s in range(1, 6)], 2),
        # stride 2: starts 0, 2, 4; frame 2 kills starts 0 and 2
        ([(0, 2)], 3, 2, [(0, 4), (1, 0), (1, 2), (1, 4)], 2),
        # stride 3: starts 0, 3; frame 2 kills start 0 only, frame 6 no start (none covers it)
        ([(0, 2), (1, 6)], 3, 3, [(0, 3), (1, 0), (1, 3)], 1),
        # two bad frames in one window count it once
        ([(1, 4), (1, 5)], 3, 1, [(0, s) for s in range(6)] + [(1, 0), (1, 1)], 4),
        # a whole trajectory invalid
        ([(0, k) for k in range(8)], 8, 1, [(1, 0)], 1),
    ],
)
def test_windows_touching_invalid_frames_are_dropped(invalid, window, stride, kept, dropped):
    y, t = _data(2, 8)
    valid = torch.ones(2, 8, dtype=torch.bool)
    for n, k in invalid:
        valid[n, k] = False
    windows = TrajectoryWindows(y, t, window, stride, valid)
    assert windows.index == kept
    assert windows.n_dropped == dropped
    assert len(windows) + windows.n_dropped == 2 * math.floor((8 - window) / stride + 1)


def test_valid_may_be_a_numpy_array():
    y, t = _data(1, 5)
    valid = np.array([[True, True, False, True, True]])
    windows = TrajectoryWindows(y, t, 2, 1, valid)
    assert windows.index == [(0, 0), (0, 3)] and windows.n_dropped == 2


@pytest.mark.parametrize("window", [0, 1, 6, 100])
def test_bad_window_is_an_error(window):
    y, t = _data(1, 5)
    with pytest.raises(ValueError, match=rf"window must be in \[2, 5\] frames, got {window}"):
        TrajectoryWindows(y, t, window)


@pytest.mark.parametrize("stride", [0, -1])
def test_bad_stride_is_an_error(stride):
    y, t = _data(1, 5)
    with pytest.raises(ValueError, match=f"stride must be at least 1, got {stride}"):
        TrajectoryWindows(y, t, 2, stride)
