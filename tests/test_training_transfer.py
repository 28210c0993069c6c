"""Starting a network from another one's weights (training/transfer.py)."""

from __future__ import annotations

import pytest
import torch

from napari_mzsr.core.network import MZSRNet
from training.transfer import convert_channels


def test_gray_network_equals_mean_of_colour_network_on_gray_input():
    rgb = MZSRNet(3, features=8, layers=4, generator=torch.Generator().manual_seed(0))
    gray = MZSRNet(1, features=8, layers=4)
    state = rgb.state_dict()
    before = {k: v.clone() for k, v in state.items()}
    gray.load_state_dict(convert_channels(state, 1))
    x = torch.rand(2, 1, 20, 24)
    with torch.no_grad():
        expected = rgb(x.repeat(1, 3, 1, 1)).mean(dim=1, keepdim=True)
        torch.testing.assert_close(gray(x), expected, rtol=1e-5, atol=1e-6)
    assert all(torch.equal(state[k], before[k]) for k in state)


def test_colour_network_from_gray_replicates_it():
    gray = MZSRNet(1, features=8, layers=4, generator=torch.Generator().manual_seed(1))
    rgb = MZSRNet(3, features=8, layers=4)
    rgb.load_state_dict(convert_channels(gray.state_dict(), 3))
    x = torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        out = rgb(x.repeat(1, 3, 1, 1))
        torch.testing.assert_close(out, gray(x).repeat(1, 3, 1, 1), rtol=1e-5, atol=1e-6)


def test_refuses_other_channel_counts():
    with pytest.raises(ValueError, match="cannot convert"):
        convert_channels(MZSRNet(3, features=8, layers=4).state_dict(), 2)
