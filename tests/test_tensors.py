"""core.tensors: the one image <-> batch conversion, for every channel layout it accepts."""

import numpy as np
import pytest

from napari_mzsr.core.tensors import from_batch, to_batch


def _image(*shape: int) -> np.ndarray:
    return np.random.default_rng(0).random(shape, dtype=np.float32)


def test_rgb_round_trips_through_both_network_widths() -> None:
    rgb = _image(5, 7, 3)
    assert to_batch(rgb, 3).shape == (1, 3, 5, 7)
    assert to_batch(rgb, 1).shape == (3, 1, 5, 7)
    np.testing.assert_array_equal(from_batch(to_batch(rgb, 3), rgb=True), rgb)
    np.testing.assert_array_equal(from_batch(to_batch(rgb, 1), rgb=True), rgb)


@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 1)])
def test_grey_feeds_a_three_channel_network_as_equal_channels(shape) -> None:
    grey = _image(*shape)
    batch = to_batch(grey, 3)
    assert batch.shape == (1, 3, 5, 7)
    for c in range(3):
        np.testing.assert_array_equal(batch[0, c].numpy(), grey.reshape(5, 7))
    assert to_batch(grey, 1).shape == (1, 1, 5, 7)
    np.testing.assert_allclose(from_batch(batch, rgb=False), grey.reshape(5, 7), rtol=1e-6)


def test_alpha_is_dropped() -> None:
    rgba = _image(5, 7, 4)
    np.testing.assert_array_equal(to_batch(rgba, 3)[0].permute(1, 2, 0).numpy(), rgba[..., :3])


@pytest.mark.parametrize("channels", [2, 5])
def test_other_channel_counts_are_refused(channels) -> None:
    with pytest.raises(ValueError, match="1, 3 or 4 channels, got"):
        to_batch(_image(5, 7, channels), 3)


@pytest.mark.parametrize(("shape", "channels"), [((5, 7, 3), 3), ((5, 7, 3), 1), ((5, 7), 1)])
def test_the_batch_never_shares_the_input_memory(shape, channels) -> None:
    image = _image(*shape)
    before = image.copy()
    to_batch(image, channels).mul_(0)
    np.testing.assert_array_equal(image, before)
