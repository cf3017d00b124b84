"""The default learning-rate schedule and outlier clipping (hybrid.schedule)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from hybrid.schedule import CLIP, FLOOR, MEMORY, WARMUP, clip_outliers, lr_factor


def test_warm_up_then_cosine_down_to_the_floor():
    total = 1000
    warmup = math.ceil(WARMUP * total)
    assert lr_factor(0, total) == pytest.approx(1 / warmup)
    assert lr_factor(warmup - 1, total) == pytest.approx(1.0)
    assert lr_factor(warmup, total) == pytest.approx(1.0)
    mid = warmup + (total - warmup) / 2
    assert lr_factor(int(mid), total) == pytest.approx(FLOOR + (1 - FLOOR) / 2, abs=2e-3)
    assert lr_factor(total, total) == pytest.approx(FLOOR)
    after = [lr_factor(s, total) for s in range(warmup, total + 1)]
    assert all(b <= a for a, b in zip(after, after[1:], strict=False))
    assert lr_factor(10**6, math.inf) == 1.0  # no end known: no decay


def test_an_outlier_gradient_is_clipped_to_a_multiple_of_the_running_mean():
    p = torch.nn.Parameter(torch.zeros(4))
    opt = torch.optim.SGD([p], lr=1.0)
    module = SimpleNamespace(correction=object(), trainer=SimpleNamespace(gradient_clip_val=None))
    for norm in (2.0, 2.0):
        p.grad = torch.tensor([norm, 0, 0, 0])
        clip_outliers(module, opt)
    assert module._grad_norm_mean == pytest.approx(2.0)
    p.grad = torch.tensor([100.0, 0, 0, 0])
    clip_outliers(module, opt)
    assert float(p.grad.norm()) == pytest.approx(CLIP * 2.0)
    assert module._grad_norm_mean == pytest.approx(MEMORY * 2 + (1 - MEMORY) * CLIP * 2)
