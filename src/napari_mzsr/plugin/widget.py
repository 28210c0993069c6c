"""The napari dock widget: super-resolve an image layer with MZSR in a worker thread.

The widget only gathers values; :mod:`napari_mzsr.plugin.jobs` turns them into checked
options and runs the stack pipeline in a ``napari.qt.threading`` generator worker; the
result is added as a new layer from the worker's callbacks (main thread).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
    SpinBox,
    create_widget,
)
from napari.layers import Image
from napari.utils.notifications import show_error
from napari.utils.transforms import Affine
from qtpy.QtCore import Qt
from qtpy.QtGui import QImage, QPixmap

from ..core.kernels import ESTIMATE, PRESETS, gaussian_kernel, load_kernel, validate_kernel
from ..pipeline.images import split_axes
from ..pipeline.stacks import default_index
from .geometry import output_name, output_scale_translate
from .jobs import Job, Outcome, Values, make_job, plain_message, work

if TYPE_CHECKING:
    import napari

    from ..io.model_file import MZSRModel
    from ..pipeline.stacks import StackProgress

PLUGIN = "napari-mzsr"
FROM_FILE = "\0file"  # ComboBox value of "from file..."; cannot clash with a model name
KERNEL_KINDS = (
    ("isotropic Gaussian", "isotropic"),
    ("anisotropic Gaussian", "anisotropic"),
    ("preset", "preset"),
    ("from file", "file"),
    ("from image layer", "layer"),
    ("estimate from the image", ESTIMATE),
)
STACK_MODES = (
    ("adapt once, apply to every slice", "once"),
    ("adapt per slice", "per_slice"),
)
ENSEMBLES = (("off", "off"), ("mean", "mean"), ("median", "median"))
NORMALIZATIONS = (
    ("data type range", "dtype"),
    ("percentiles 0.1-99.9", "percentile"),
    ("min-max", "minmax"),
)
PREVIEW_PIXELS = 84


def _plugin_defaults() -> dict[str, Any]:
    """The user's plugin settings (napari >= 0.9), or the built-in defaults."""
    defaults: dict[str, Any] = {"model": "", "device": "auto", "steps": 10}
    try:
        from napari.settings import get_plugin_settings

        section = get_plugin_settings(PLUGIN).defaults
        defaults.update({key: getattr(section, key) for key in defaults})
    except (ImportError, KeyError, AttributeError):
        pass  # older napari, or the plugin is not registered (widget built by hand)
    return defaults


def _kernel_pixmap(kernel: np.ndarray, pixels: int = PREVIEW_PIXELS) -> QPixmap:
    grey = np.ascontiguousarray(np.rint(255 * kernel / kernel.max()).astype(np.uint8))
    image = QImage(grey.data, grey.shape[1], grey.shape[0], grey.shape[1], QImage.Format_Grayscale8)
    # Nearest-neighbour enlargement keeps the kernel's pixels visible.
    return QPixmap.fromImage(image.copy()).scaled(
        pixels, pixels, Qt.KeepAspectRatio, Qt.FastTransformation
    )


class MZSRWidget(Container):
    """Dock widget: zero-shot super-resolution of an image layer with MZSR.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer whose layers are offered and receive the result (injected by napari).
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        from ..core.devices import available_devices, resolve_device
        from ..io.model_file import shipped_models

        super().__init__()
        self._viewer = viewer
        self.worker = None
        self._job: Job | None = None
        self._loaded: dict[str, MZSRModel] = {}
        self._alive = True
        settings = _plugin_defaults()

        self._image = create_widget(annotation=Image, label="image")
        shipped = sorted(shipped_models())
        self._model = ComboBox(
            label="model", choices=[*((n, n) for n in shipped), ("from file...", FROM_FILE)]
        )
        self._model_file = FileEdit(label="model file", mode="r", filter="*.pt")
        self._model_info = Label(label="")
        self._scale = FloatSpinBox(label="scale", value=2.0, min=1.0, max=8.0, step=0.5)

        self._kernel_kind = ComboBox(label="kernel", choices=KERNEL_KINDS, value="isotropic")
        self._variance = FloatSpinBox(
            label="variance", value=2.0, min=0.01, max=100.0, step=0.1,
            tooltip="variance (sigma^2) of the Gaussian blur, in pixels^2",
        )  # fmt: skip
        self._l1 = FloatSpinBox(label="lambda 1", value=4.0, min=0.01, max=100.0, step=0.1)
        self._l2 = FloatSpinBox(label="lambda 2", value=1.0, min=0.01, max=100.0, step=0.1)
        self._theta = FloatSpinBox(
            label="theta (rad)", value=-0.5, min=-3.1416, max=3.1416, step=0.05
        )
        self._preset = ComboBox(label="preset", choices=list(PRESETS), value="g^d_2.0")
        self._kernel_file = FileEdit(
            label="kernel file", mode="r", filter="*.mat *.npy *.tif *.tiff"
        )
        self._kernel_layer = create_widget(annotation=Image, label="kernel layer")
        self._kernel_preview = Label(label="preview")
        self._kernel_preview.native.setMinimumHeight(PREVIEW_PIXELS)

        self._steps = SpinBox(label="steps", value=int(settings["steps"]), min=0, max=1000)
        detected = resolve_device("auto")
        devices = [(f"auto ({detected})" if d == "auto" else d, d) for d in available_devices()]
        device = settings["device"] if settings["device"] in dict(devices).values() else "auto"
        self._device = ComboBox(label="device", choices=devices, value=device)
        self._stack_mode = ComboBox(label="stack", choices=STACK_MODES, value="once")
        self._current_only = CheckBox(text="current slice only")
        self._replace = CheckBox(text="replace previous result")
        self._float_output = CheckBox(text="float32 output")

        self._show_advanced = CheckBox(text="advanced")
        self._lr = LineEdit(label="learning rate")
        self._lr.native.setPlaceholderText("model's schedule")
        self._normalization = ComboBox(label="intensities", choices=NORMALIZATIONS)
        self._seed = SpinBox(label="seed", value=0, min=0, max=2**31 - 1)
        self._ensemble = ComboBox(
            label="self-ensemble", choices=ENSEMBLES, value="off",
            tooltip="combine the flips/rotations that leave the kernel unchanged "
            "(8 for an isotropic kernel); one inference each",
        )  # fmt: skip
        self._back_projection = SpinBox(
            label="back-projection", value=0, min=0, max=50,
            tooltip="iterations of back-projection with the kernel after inference (0: off); "
            "it trusts the kernel, so an estimated one that is too large costs detail",
        )  # fmt: skip
        self._advanced = Container(
            widgets=[
                self._lr,
                self._normalization,
                self._seed,
                self._ensemble,
                self._back_projection,
            ]
        )
        self._advanced.visible = False

        self._run_button = PushButton(text="Run")
        self._cancel_button = PushButton(text="Cancel", enabled=False)
        self._progress = ProgressBar(label="progress", value=0, min=0, max=1)
        self._status = Label(label="")

        self.extend(
            [
                self._image,
                self._model,
                self._model_file,
                self._model_info,
                self._scale,
                self._kernel_kind,
                self._variance,
                self._l1,
                self._l2,
                self._theta,
                self._preset,
                self._kernel_file,
                self._kernel_layer,
                self._kernel_preview,
                self._steps,
                self._device,
                self._stack_mode,
                self._current_only,
                self._replace,
                self._float_output,
                self._show_advanced,
                self._advanced,
                Container(widgets=[self._run_button, self._cancel_button], layout="horizontal"),
                self._progress,
                self._status,
            ]
        )

        self._model.changed.connect(self._on_model_changed)
        self._model_file.changed.connect(self._on_model_changed)
        self._image.changed.connect(self._on_image_changed)
        for widget in (
            self._kernel_kind, self._variance, self._l1, self._l2, self._theta,
            self._preset, self._kernel_file, self._kernel_layer,
        ):  # fmt: skip
            widget.changed.connect(self._update_kernel)
        self._show_advanced.changed.connect(lambda on: setattr(self._advanced, "visible", on))
        self._run_button.changed.connect(self.run)
        self._cancel_button.changed.connect(self.cancel)
        self.native.destroyed.connect(self._on_destroyed)

        if settings["model"]:
            if settings["model"] in shipped:
                self._model.value = settings["model"]
            else:
                self._model.value = FROM_FILE
                self._model_file.value = settings["model"]
        self._on_model_changed()
        self._on_image_changed()
        self._update_kernel()

    # -- option handling -------------------------------------------------------------

    def _model_source(self) -> str | None:
        if self._model.value != FROM_FILE:
            return self._model.value
        path = Path(self._model_file.value)
        return str(path) if path.is_file() else None

    def _load_model(self) -> MZSRModel:
        """The chosen theta_M, loaded once per source (it is only read, never adapted)."""
        from ..io.model_file import load_model

        source = self._model_source()
        if source is None:
            raise ValueError("choose a model file (theta_M, .pt)")
        if source not in self._loaded:
            self._loaded = {source: load_model(source)}
        return self._loaded[source]

    def _on_model_changed(self, *_: object) -> None:
        self._model_file.visible = self._model.value == FROM_FILE
        try:
            info = self._load_model().info
        except Exception as exc:  # any unreadable file: say so next to the option
            self._model_info.value = plain_message(exc)
            return
        lo, hi = min(info.scales), max(info.scales)
        self._scale.min, self._scale.max = lo, hi
        self._scale.value = lo if len(info.scales) == 1 else min(max(self._scale.value, lo), hi)
        self._scale.enabled = hi > lo
        colour = "RGB" if info.channels == 3 else "single-channel"
        self._model_info.value = f"{info.name}: {colour}, {info.degradation} subsampling"
        self._update_kernel()

    def _on_image_changed(self, *_: object) -> None:
        layer = self._image.value
        slices = bool(layer is not None and split_axes(layer.data.shape, layer.rgb)[0])
        self._stack_mode.enabled = slices
        self._current_only.enabled = slices

    def _kernel(self) -> tuple[np.ndarray | str, str]:
        """The chosen blur kernel (or :data:`ESTIMATE`) and a description of it;
        ValueError if it is bad."""
        kind = self._kernel_kind.value
        if kind == ESTIMATE:
            return ESTIMATE, "estimated from the image"
        if kind == "isotropic":
            v = self._variance.value
            return gaussian_kernel(v), f"isotropic Gaussian, variance {v:g}"
        if kind == "anisotropic":
            l1, l2, theta = self._l1.value, self._l2.value, self._theta.value
            text = f"anisotropic Gaussian, lambda1 {l1:g}, lambda2 {l2:g}, theta {theta:g}"
            return gaussian_kernel(l1, l2, theta), text
        if kind == "preset":
            return PRESETS[self._preset.value].kernel(), f"preset {self._preset.value}"
        if kind == "file":
            path = Path(self._kernel_file.value)
            if not path.is_file():
                raise ValueError("choose a kernel file (.mat, .npy or .tif)")
            return load_kernel(path), f"file {path}"
        layer = self._kernel_layer.value
        if layer is None:
            raise ValueError("choose the image layer that holds the kernel")
        if layer.rgb or layer.multiscale:
            raise ValueError(f"kernel layer {layer.name!r} must be a single 2D grayscale image")
        try:
            kernel = validate_kernel(np.asarray(layer.data))
        except ValueError as exc:
            raise ValueError(f"kernel layer {layer.name!r}: {exc}") from None
        return kernel, f"layer {layer.name}"

    def _update_kernel(self, *_: object) -> None:
        kind = self._kernel_kind.value
        for widget, shown in (
            (self._variance, kind == "isotropic"),
            (self._l1, kind == "anisotropic"),
            (self._l2, kind == "anisotropic"),
            (self._theta, kind == "anisotropic"),
            (self._preset, kind == "preset"),
            (self._kernel_file, kind == "file"),
            (self._kernel_layer, kind == "layer"),
        ):
            widget.visible = shown
        label = self._kernel_preview.native
        try:
            kernel, text = self._kernel()
        except (ValueError, FileNotFoundError) as exc:
            label.clear()
            label.setText(str(exc))
            return
        if isinstance(kernel, str):
            label.clear()
            label.setText(f"{text} when run")
            label.setToolTip("a Gaussian fitted to the image's spectrum, in a fraction of a second")
            return
        label.setPixmap(_kernel_pixmap(kernel))
        size = kernel.shape[0]
        tip = f"{size}x{size} kernel"
        model = self._loaded.get(self._model_source() or "")
        if kind == "preset" and model is not None:
            wanted, have = PRESETS[self._preset.value].degradation, model.info.degradation
            if wanted != have:
                tip += f"; this preset is for {wanted} models, the model is {have}"
        label.setToolTip(tip)

    def _slice_index(self, layer: Image) -> tuple[int, ...]:
        """Index on the layer's slice axes of the slice shown in the viewer."""
        slice_shape, _ = split_axes(layer.data.shape, layer.rgb)
        if not slice_shape:
            return ()
        try:
            point = layer.world_to_data(self._viewer.dims.point)
        except (ValueError, IndexError):
            return default_index(slice_shape)
        lead = np.rint(np.asarray(point, dtype=float)[: len(slice_shape)]).astype(int)
        return tuple(int(np.clip(i, 0, n - 1)) for i, n in zip(lead, slice_shape, strict=True))

    def _make_job(self) -> Job:
        layer = self._image.value
        if layer is None:
            raise ValueError("choose an image layer")
        kernel, kernel_text = self._kernel()
        values = Values(
            layer=layer,
            model=self._load_model(),
            scale=float(self._scale.value),
            kernel=kernel,
            kernel_text=kernel_text,
            steps=int(self._steps.value),
            device=self._device.value,
            seed=int(self._seed.value),
            lr_text=self._lr.value,
            normalization=self._normalization.value,
            mode=self._stack_mode.value,
            index=self._slice_index(layer),
            current_only=self._current_only.value,
            replace=self._replace.value,
            float_output=self._float_output.value,
            ensemble=None if self._ensemble.value == "off" else self._ensemble.value,
            back_projection=int(self._back_projection.value),
        )
        job = make_job(values)
        model = job.options.for_image(layer.rgb).model
        job.settings = {"model": model.info.name, "model_source": model.source, **job.settings}
        return job

    # -- running ---------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether a run is in progress."""
        return self.worker is not None

    def run(self) -> None:
        """Start super-resolving the chosen layer (what the Run button does).

        Bad options are reported as a napari notification and nothing starts.
        """
        if self.running:
            return
        try:
            job = self._make_job()
        except Exception as exc:  # bad option or unreadable file: tell the user, change nothing
            self._fail(plain_message(exc))
            return
        self._job = job
        worker = work(job)
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(self._on_returned)
        worker.aborted.connect(self._on_aborted)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self._set_running(True)
        self._progress.value = 0
        self._status.value = "starting..."
        worker.start()

    def cancel(self) -> None:
        """Stop the run after the current step; no layer is added."""
        if self.worker is not None:
            self._status.value = "cancelling..."
            self.worker.quit()

    def _set_running(self, running: bool) -> None:
        self._run_button.enabled = not running
        self._cancel_button.enabled = running

    def _fail(self, message: str) -> None:
        self._status.value = "failed"
        show_error(f"MZSR: {message}")

    def _on_progress(self, p: StackProgress | str) -> None:
        if not self._alive:
            return
        if isinstance(p, str):
            self._status.value = p
            return
        self._progress.max = max(p.total, 1)
        self._progress.value = p.done
        parts = []
        if p.phase == "adapt":
            parts.append(f"step {p.step}/{p.steps}")
        if p.n_slices > 1:
            parts.append(f"slice {min(p.slice_done + 1, p.n_slices)}/{p.n_slices}")
        if p.loss is not None:
            parts.append(f"loss {p.loss:.4g}")
        self._status.value = ", ".join(parts)

    def _on_returned(self, outcome: Outcome) -> None:
        if not self._alive:
            return
        if outcome.error is not None:
            self._fail(outcome.error)
            return
        estimate = outcome.result.kernel_estimate
        if estimate is not None:
            self._job.settings["kernel"] = f"estimated: {estimate.describe()}"
            self._job.settings["kernel_estimate"] = {
                "l1": estimate.l1,
                "l2": estimate.l2,
                "theta": estimate.theta,
                "covariance": estimate.covariance.tolist(),
                "fit_residual": estimate.residual,
            }
            if self._job.has_slices:
                self._job.settings["kernel_estimate"]["slice"] = list(self._job.index)
        try:
            self._add_result(self._job, outcome.result.data)
        except Exception as exc:  # e.g. the viewer refused the layer: keep it unchanged
            self._fail(plain_message(exc))
            return
        status = self._status.value
        if estimate is not None:
            status = f"{status}, kernel {estimate.describe()}" if status else estimate.describe()
        self._status.value = f"done: {status}" if status else "done"

    def _on_aborted(self) -> None:
        if self._alive:
            self._status.value = "cancelled"

    def _on_finished(self) -> None:
        self.worker = None
        self._job = None
        if self._alive:
            self._set_running(False)

    def _on_destroyed(self, *_: object) -> None:
        self._alive = False
        if self.worker is not None:
            self.worker.quit()

    def _add_result(self, job: Job, result: np.ndarray) -> Image:
        """Add (or swap in) the result layer, placed to overlay the input exactly."""
        src = job.layer
        n_spatial = 2
        linear = Affine(rotate=src.rotate, shear=src.shear, ndim=src.ndim).linear_matrix
        scale, translate = output_scale_translate(
            src.scale,
            src.translate,
            job.options.scale,
            n_spatial,
            linear=linear,
            slice_index=job.index if job.current_only else None,
            degradation=job.options.for_image(src.rgb).model.info.degradation,
        )
        metadata = {k: v for k, v in src.metadata.items() if k != "mzsr"}
        source_id = str(src.unique_id)
        metadata["mzsr"] = {"source": src.name, "source_id": source_id, **job.settings}
        kwargs: dict[str, Any] = {
            "name": output_name(src.name, job.options.scale, preview=job.current_only),
            "rgb": src.rgb,
            "scale": scale,
            "translate": translate,
            "rotate": src.rotate,
            "shear": src.shear,
            "affine": src.affine.affine_matrix,
            "units": src.units,
            "axis_labels": src.axis_labels,
            "blending": src.blending,
            "opacity": src.opacity,
            "contrast_limits": src.contrast_limits,
            "gamma": src.gamma,
            "metadata": metadata,
        }
        if not src.rgb:
            kwargs["colormap"] = src.colormap
        new = Image(result, **kwargs)
        layers = self._viewer.layers
        previous = [
            i for i, layer in enumerate(layers)
            if job.replace and layer.metadata.get("mzsr", {}).get("source_id") == source_id
        ]  # fmt: skip
        if previous:
            position = previous[0]
            for i in reversed(previous):
                layers.pop(i)
            layers.insert(position, new)
        else:
            layers.append(new)
        return new
