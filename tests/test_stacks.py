"""N-D stack handling (napari_mzsr.pipeline.stacks): shapes, modes, progress, cancel. No GUI."""

import numpy as np
import pytest

from napari_mzsr.pipeline.stacks import (
    StackProgress,
    default_index,
    iter_super_resolve_stack,
    split_axes,
)

SIZE = 24  # smallest convenient side for the default 21x21 kernel
RUN = {"device": "cpu", "precision": "float32"}  # deterministic, so results compare exactly


def _images(n: int, rgb: bool = False) -> np.ndarray:
    rng = np.random.default_rng(7)
    shape = (n, SIZE, SIZE, 3) if rgb else (n, SIZE, SIZE)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def _drain(run):
    reports = []
    try:
        while True:
            reports.append(next(run))
    except StopIteration as done:
        return reports, done.value


def _single(image, tiny_model, steps=2, rgb=None):
    from napari_mzsr.pipeline.run import iter_super_resolve

    _, result = _drain(
        iter_super_resolve(
            image, scale=2, kernel=2.0, steps=steps, model=tiny_model, rgb=rgb, **RUN
        )
    )
    return result


def test_split_axes():
    assert split_axes((8, 9)) == ((), 2)
    assert split_axes((4, 3, 8, 9)) == ((4, 3), 2)
    assert split_axes((8, 9, 3), rgb=True) == ((), 3)
    assert split_axes((2, 8, 9, 4), rgb=True) == ((2,), 3)
    with pytest.raises(ValueError, match="too few axes"):
        split_axes((8,))
    with pytest.raises(ValueError, match="3 or 4 colours"):
        split_axes((8, 9, 5), rgb=True)


def test_default_index_is_the_middle_slice():
    assert default_index(()) == ()
    assert default_index((5, 2)) == (2, 1)


def test_single_image_matches_the_api(tiny_model):
    image = _images(1)[0]
    reports, result = _drain(
        iter_super_resolve_stack(image, scale=2, kernel=2.0, steps=2, model=tiny_model, **RUN)
    )
    np.testing.assert_array_equal(result, _single(image, tiny_model))
    assert [r.phase for r in reports] == ["adapt", "adapt", "apply"]
    assert [r.done for r in reports] == [1, 2, 3]
    assert all(r.total == 3 and r.n_slices == 1 for r in reports)


def test_once_adapts_on_the_chosen_slice_and_applies_to_all(tiny_model):
    stack = _images(3)
    run = iter_super_resolve_stack(
        stack, scale=2, kernel=2.0, steps=2, model=tiny_model, mode="once", index=(1,), **RUN
    )
    reports, result = _drain(run)
    assert result.shape == (3, 2 * SIZE, 2 * SIZE)
    assert result.dtype == np.uint8
    # The adaptation slice gets exactly the single-image result; the others differ.
    np.testing.assert_array_equal(result[1], _single(stack[1], tiny_model))
    assert not np.array_equal(result[0], _single(stack[0], tiny_model))
    assert [r.phase for r in reports] == ["adapt"] * 2 + ["apply"] * 3
    assert [r.done for r in reports] == [1, 2, 3, 4, 5]
    assert reports[-1].slice_done == 3 and reports[-1].total == 5
    assert all(isinstance(r.loss, float) for r in reports)


def test_per_slice_adapts_on_every_slice(tiny_model):
    stack = _images(2)
    run = iter_super_resolve_stack(
        stack, scale=2, kernel=2.0, steps=2, model=tiny_model, mode="per_slice", **RUN
    )
    reports, result = _drain(run)
    for i in range(2):
        np.testing.assert_array_equal(result[i], _single(stack[i], tiny_model))
    assert [r.phase for r in reports] == ["adapt", "adapt", "apply"] * 2
    assert [r.slice_done for r in reports] == [0, 0, 1, 1, 1, 2]
    assert reports[-1].done == reports[-1].total == 6


def test_every_slice_axis_is_kept(tiny_model):
    data = _images(6).reshape(2, 3, SIZE, SIZE)  # e.g. (T, C, Y, X)
    _, result = _drain(
        iter_super_resolve_stack(data, scale=2, kernel=2.0, steps=1, model=tiny_model, **RUN)
    )
    assert result.shape == (2, 3, 2 * SIZE, 2 * SIZE)


def test_rgb_stack_stays_rgb(tiny_model):
    data = _images(2, rgb=True)
    _, result = _drain(
        iter_super_resolve_stack(
            data, scale=2, kernel=2.0, steps=1, model=tiny_model, rgb=True, **RUN
        )
    )
    assert result.shape == (2, 2 * SIZE, 2 * SIZE, 3)
    assert result.dtype == np.uint8


def test_current_only_processes_one_slice(tiny_model):
    data = _images(4).reshape(2, 2, SIZE, SIZE)
    run = iter_super_resolve_stack(
        data, scale=2, kernel=2.0, steps=2, model=tiny_model, index=(1, 0), current_only=True, **RUN
    )
    reports, result = _drain(run)
    assert result.shape == (1, 1, 2 * SIZE, 2 * SIZE)
    np.testing.assert_array_equal(result[0, 0], _single(data[1, 0], tiny_model))
    assert reports[-1].total == 3 and reports[-1].n_slices == 1


def test_float_output(tiny_model):
    _, result = _drain(
        iter_super_resolve_stack(
            _images(2),
            scale=2,
            kernel=2.0,
            steps=1,
            model=tiny_model,
            output_dtype="float32",
            **RUN,
        )
    )
    assert result.dtype == np.float32
    assert 0 <= result.min() and result.max() <= 255  # the input's units


def test_one_intensity_map_for_the_whole_stack(tiny_model):
    from napari_mzsr.core.intensity import intensity_map

    stack = _images(2).astype(np.uint16) * 4
    stack[1] //= 2  # a dimmer slice
    imap = intensity_map(stack, "minmax")
    _, fitted = _drain(
        iter_super_resolve_stack(
            stack, scale=2, kernel=2.0, steps=1, model=tiny_model, normalization="minmax", **RUN
        )
    )
    _, given = _drain(
        iter_super_resolve_stack(
            stack, scale=2, kernel=2.0, steps=1, model=tiny_model, normalization=imap, **RUN
        )
    )
    np.testing.assert_array_equal(fitted, given)


def test_closing_cancels_between_steps(tiny_model):
    run = iter_super_resolve_stack(
        _images(3), scale=2, kernel=2.0, steps=50, model=tiny_model, mode="per_slice", **RUN
    )
    first = next(run)
    assert isinstance(first, StackProgress) and first.done == 1
    run.close()
    with pytest.raises(StopIteration):
        next(run)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "sometimes"}, "stack mode"),
        ({"index": (3,)}, "outside the slice axes"),
        ({"index": (0, 0)}, "outside the slice axes"),
        ({"kernel": np.ones((4, 4))}, "odd"),
        ({"scale": 3}, "supports scale"),
    ],
)
def test_bad_arguments_fail_before_the_first_step(tiny_model, kwargs, message):
    args = {"scale": 2, "kernel": 2.0, "steps": 2, "model": tiny_model, **kwargs}
    run = iter_super_resolve_stack(_images(2), **args, **RUN)
    with pytest.raises(ValueError, match=message):
        next(run)
