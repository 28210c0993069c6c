"""The napari dock widget: super-resolve image layers with MZSR in a worker thread.

The widget only gathers values and shows what happens; :mod:`napari_mzsr.plugin.jobs`
turns the values into checked options, chooses the model and runs the job in a
``napari.qt.threading`` generator worker; results are added as new layers from the
worker's callbacks (main thread). Choices are remembered (:mod:`.memory`).
"""

from __future__ import annotations

import time
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
from napari.utils import progress as activity_progress
from napari.utils.notifications import show_error
from napari.utils.transforms import Affine
from qtpy.QtCore import QEvent, QObject, Qt
from qtpy.QtGui import QImage, QPixmap
from qtpy.QtWidgets import QFrame, QScrollArea, QSizePolicy

from ..core.kernels import AUTO as AUTO_KERNEL
from ..core.kernels import ESTIMATE, PRESETS, gaussian_kernel, load_kernel, validate_kernel
from ..pipeline.axial_options import DEFAULT_MODEL as AXIAL_MODEL
from ..pipeline.axial_options import check_axial_factor
from ..pipeline.images import split_axes
from ..pipeline.stacks import default_index
from . import memory
from .axial_job import (
    AxialJob,
    AxialOutcome,
    AxialValues,
    axial_layer,
    layer_z_factor,
    make_axial_job,
    work_axial,
)
from .calibration_widget import CalibrationSection
from .export_job import Exporter
from .geometry import (
    PREVIEW_MAX_SIDE,
    visible_region,
)
from .help import TOOLTIPS, help_html, label_of
from .jobs import (
    AUTO,
    CHANNEL_MODES,
    ENSEMBLES,
    NORMALIZATIONS,
    SCOPES,
    STACK_MODES,
    Job,
    JobProgress,
    Outcome,
    TimeLeft,
    Values,
    choose,
    format_seconds,
    make_job,
    plain_message,
    work,
)
from .results import result_layer
from .style import ERROR_STYLE, LINK_COLOR, SCALE_DECIMALS, WARNING_STYLE

if TYPE_CHECKING:
    import napari

    from ..io.model_file import MZSRModel

PLUGIN = "napari-mzsr"
FROM_FILE = "\0file"  # ComboBox value of "from file..."; cannot clash with a model name
KERNEL_KINDS = (
    ("auto (unknown origin, self-checked)", AUTO_KERNEL),
    ("isotropic Gaussian", "isotropic"),
    ("anisotropic Gaussian", "anisotropic"),
    ("preset", "preset"),
    ("from file", "file"),
    ("from image layer", "layer"),
    ("estimate from the image", ESTIMATE),
)
PREVIEW_PIXELS = 84

BUTTONS = ("run", "preview", "cancel", "export")
# Version 2: back-projection "auto" (-1) became the default.
MEMORY_VERSION = 2
# Remembered choices not worth a mention when they come back (layout, not results).
QUIET = ("show_advanced", "model_file", "scale_x_on", "current_only", "replace")
REMEMBERED = (
    "scope", "channel_mode", "model", "model_file", "scale", "scale_x_on", "scale_x",
    "kernel_kind", "variance", "l1", "l2", "theta", "preset", "kernel_file", "steps",
    "device", "stack_mode", "current_only", "replace", "float_output", "show_advanced",
    "lr", "normalization", "seed", "ensemble", "back_projection", "tile", "threads",
)  # fmt: skip


def _plugin_defaults() -> dict[str, Any]:
    """The user's plugin preferences (napari >= 0.9), or the built-in defaults."""
    defaults: dict[str, Any] = {"model": "auto", "device": "auto", "steps": 10}
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


class _Orphaned(QObject):
    """Calls back when the watched widget loses its parent: napari's dock "x" takes the
    widget out of its dock (``setParent(None)``) without deleting it."""

    def __init__(self, callback) -> None:
        super().__init__()
        self._callback = callback

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.ParentChange and obj.parent() is None:
            self._callback()
        return False


class _FitWidth(QObject):
    """Keeps a scroll area as wide as its content needs whenever the content's layout
    changes (a section shown, a long status): only the height may scroll."""

    def __init__(self, scroll: QScrollArea) -> None:
        super().__init__()
        self._scroll = scroll

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.LayoutRequest:
            bar = self._scroll.verticalScrollBar().sizeHint().width()
            self._scroll.setMinimumWidth(obj.minimumSizeHint().width() + bar)
        return False


class MZSRWidget(Container):
    """Dock widget: zero-shot super-resolution of image layers with MZSR.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer whose layers are offered and receive the results (injected by napari).
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self._body = Container()
        self.append(self._body)
        self._scroll_body()
        self._viewer = viewer
        self.worker = None
        self._job: Job | None = None
        self._loaded: dict[str, MZSRModel] = {}
        self._alive = True
        self._closed = False
        self._cancel_reason: str | None = None
        self._activity = None
        self._eta = TimeLeft()
        self._started = 0.0
        self._help_dialog = None
        self._restoring = False
        self._blocked: str | None = None  # why Run cannot run now (None: it can)

        self._add_input_controls()
        self._add_kernel_controls()
        self._add_run_controls()
        self._controls = {
            name: getattr(self, f"_{name}_button" if name in BUTTONS else f"_{name}")
            for name in TOOLTIPS
        }
        self._style_controls()
        self._apply_preferences(_plugin_defaults())
        self._restore_models()
        restored = self._restore()
        self._connect(viewer)

        self._advanced.visible = self._show_advanced.value
        self._update_scale()
        self._on_model_changed()
        self._on_image_changed()
        self._status.value = self._describe_restored(restored)

    # -- building ---------------------------------------------------------------------

    def _scroll_body(self) -> None:
        """Put the controls in a vertical scroll area, so that Run and the progress stay
        reachable on a laptop screen (the dock with 'advanced' shown is taller than 768
        pixels). magicgui's own ``scrollable`` is lost in napari, which docks the
        widget inside the scroll area; this one is inside what napari docks."""
        layout = self.native.layout()
        layout.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        scroll.setFrameShape(QFrame.NoFrame)
        layout.removeWidget(self._body.native)
        scroll.setWidget(self._body.native)
        layout.addWidget(scroll)
        self._scroll = scroll
        self._fit_width = _FitWidth(scroll)
        self._body.native.installEventFilter(self._fit_width)

    def _add_input_controls(self) -> None:
        """The image, what to run it on, the model and the scale."""
        from ..cli.model_table import summarize
        from ..io.model_file import shipped_models

        self._image = create_widget(annotation=Image, label="image")
        self._scope = ComboBox(label="run on", choices=SCOPES, value="layer")
        self._channel_mode = ComboBox(label="channels", choices=CHANNEL_MODES, value="per_layer")
        self._scope_info = Label(label="")
        shipped = sorted(shipped_models())
        self._summaries = {name: summarize(self._shipped(name).info) for name in shipped}
        self._shipped_choices = [
            ("auto (from the image and the kernel)", AUTO),
            *((self._summaries[n].label(), n) for n in shipped),
        ]
        # Profiles and files the user added: napari resets every ComboBox's choices
        # when a layer is added, so the list is a callable that keeps them.
        self._added: dict[str, str] = {}
        self._model = ComboBox(label="model", choices=self._model_choices, value=AUTO)
        self._forget_model = PushButton(text="Remove from list", visible=False)
        self._forget_model.tooltip = "remove this model from the list (its file is kept)"
        for i, name in enumerate(shipped, start=1):  # each entry's details on hover
            self._model.native.setItemData(i, self._summaries[name].tooltip(), Qt.ToolTipRole)
        self._model_file = FileEdit(label="model file", mode="r", filter="*.pt")
        self._model_info = Label(label="")
        self._model_warning = Label(label="")
        self._help = Label(label="")
        self._isotropic = CheckBox(text="isotropic Z")
        self._axial_info = Label(label="")
        self._axial_sigma = FloatSpinBox(
            label="axial sigma", value=0.0, min=0.0, max=20.0, step=0.1
        )
        self._axial_sigma.native.setSpecialValueText("estimate")
        # A TIFF opened in napari often has scale (1, 1, 1): the Z factor can be typed.
        self._z_factor = FloatSpinBox(label="Z factor", value=0.0, min=0.0, max=10.0, step=0.1)
        self._z_factor.native.setSpecialValueText("from the layer scale")
        self._z_factor.native.setDecimals(3)
        self._z_factor.tooltip = (
            "isotropic Z: Z step over pixel size (e.g. 0.5 um / 0.125 um = 4); leave at "
            "'from the layer scale' when the layer's scale holds the voxel size"
        )
        self._scale = FloatSpinBox(label="scale", value=2.0, min=1.1, max=8.0, step=0.1)
        self._scale_x_on = CheckBox(text="different factor for X")
        self._scale_x = FloatSpinBox(label="scale X", value=2.0, min=1.1, max=8.0, step=0.1)
        for spin in (self._scale, self._scale_x):  # a camera profile's factor, e.g. 2.8871
            spin.native.setDecimals(SCALE_DECIMALS)
        self._body.extend(
            [
                self._image,
                self._scope,
                self._channel_mode,
                self._scope_info,
                self._model,
                self._forget_model,
                self._model_file,
                self._model_info,
                self._model_warning,
                self._help,
                self._isotropic,
                self._z_factor,
                self._axial_info,
                self._axial_sigma,
                self._scale,
                self._scale_x_on,
                self._scale_x,
            ]
        )

    def _add_kernel_controls(self) -> None:
        """The blur to undo: a Gaussian, a preset, a file, a layer or an estimate."""
        self._kernel_kind = ComboBox(label="kernel", choices=KERNEL_KINDS, value=AUTO_KERNEL)
        self._variance = FloatSpinBox(label="variance", value=2.0, min=0.01, max=100.0, step=0.1)
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
        self._body.extend(
            [
                self._kernel_kind,
                self._variance,
                self._l1,
                self._l2,
                self._theta,
                self._preset,
                self._kernel_file,
                self._kernel_layer,
                self._kernel_preview,
            ]
        )

    def _add_run_controls(self) -> None:
        """Steps, device, stack handling, the advanced options and the buttons."""
        from ..core.devices import available_devices, resolve_device

        self._steps = SpinBox(label="steps", value=10, min=0, max=1000)
        detected = resolve_device("auto")
        self._devices = [
            (f"auto ({detected})" if d == "auto" else d, d) for d in available_devices()
        ]
        self._device = ComboBox(label="device", choices=self._devices, value="auto")
        self._stack_mode = ComboBox(label="stack", choices=STACK_MODES, value="once")
        self._current_only = CheckBox(text="current slice only")
        self._replace = CheckBox(text="replace previous result")
        self._float_output = CheckBox(text="float32 output")

        self._show_advanced = CheckBox(text="advanced")
        self._lr = LineEdit(label="learning rate")
        self._lr.native.setPlaceholderText("model's schedule")
        self._normalization = ComboBox(label="intensities", choices=NORMALIZATIONS, value="auto")
        self._seed = SpinBox(label="seed", value=0, min=0, max=2**31 - 1)
        self._ensemble = ComboBox(label="self-ensemble", choices=ENSEMBLES, value="off")
        self._back_projection = FloatSpinBox(label="back-projection", value=-1, min=-1, max=50)
        self._back_projection.native.setSpecialValueText("auto (1 for photos)")
        # Float spin boxes with no decimals: magicgui's integer one (superqt's large-int
        # box) cannot show a word for its minimum, and "0" reads as zero tiles or threads.
        self._tile = FloatSpinBox(label="tile size", value=0, min=0, max=16384, step=64)
        self._tile.native.setSpecialValueText("auto (free memory)")
        self._threads = FloatSpinBox(label="CPU threads", value=0, min=0, max=1024, step=1)
        self._threads.native.setSpecialValueText("auto (free cores)")
        for spin in (self._back_projection, self._tile, self._threads):
            spin.native.setDecimals(0)
        self._reset = PushButton(text="Restore defaults")
        self._advanced = Container(
            widgets=[
                self._lr,
                self._normalization,
                self._seed,
                self._ensemble,
                self._back_projection,
                self._tile,
                self._threads,
            ]
        )
        self._advanced.visible = False

        self._run_button = PushButton(text="Run")
        self._preview_button = PushButton(text="Preview")
        self._cancel_button = PushButton(text="Cancel", enabled=False)
        self._progress = ProgressBar(label="progress", value=0, min=0, max=1)
        self._status = Label(label="")
        self._export_button = PushButton(text="Export...", enabled=False)
        self._body.extend(
            [
                self._steps,
                self._device,
                self._stack_mode,
                self._current_only,
                self._replace,
                self._float_output,
                self._show_advanced,
                self._advanced,
                Container(
                    widgets=[
                        self._run_button,
                        self._preview_button,
                        self._cancel_button,
                        self._reset,
                    ],
                    layout="horizontal",
                ),
                self._progress,
                self._status,
                self._export_button,
            ]
        )
        self.calibration = CalibrationSection(self)
        self._body.append(self.calibration)

    def _style_controls(self) -> None:
        for name, text in TOOLTIPS.items():
            self._controls[name].tooltip = text
        for label in (
            self._model_info, self._model_warning, self._status, self._scope_info,
            self._axial_info,
        ):  # fmt: skip
            label.native.setWordWrap(True)
            label.native.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Preferred)
        self._model_warning.native.setStyleSheet(WARNING_STYLE)
        self._status.native.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self._help.native.setTextFormat(Qt.RichText)
        # Qt's default link blue is unreadable on napari's dark theme.
        self._help.value = (
            f'<a href="help" style="color: {LINK_COLOR};">Help: what each control does, '
            "and the models</a>"
        )
        self._help.native.linkActivated.connect(self.show_help)

    def _connect(self, viewer: napari.viewer.Viewer) -> None:
        self._model.changed.connect(self._on_model_changed)
        self._forget_model.changed.connect(self.forget_model)
        self._model_file.changed.connect(self._on_model_changed)
        self._image.changed.connect(self._on_image_changed)
        self._isotropic.changed.connect(self._on_image_changed)
        self._z_factor.changed.connect(self._on_image_changed)
        self._scope.changed.connect(self._update_scope)
        for widget in (self._scale, self._scale_x_on, self._scale_x):
            widget.changed.connect(self._update_scale)
        for widget in (
            self._kernel_kind, self._variance, self._l1, self._l2, self._theta,
            self._preset, self._kernel_file, self._kernel_layer,
        ):  # fmt: skip
            widget.changed.connect(self._update_kernel)
        for name in REMEMBERED:
            self._controls[name].changed.connect(self._remember)
        self._show_advanced.changed.connect(lambda on: setattr(self._advanced, "visible", on))
        self._run_button.changed.connect(self.run)
        self._preview_button.changed.connect(self.preview)
        self._cancel_button.changed.connect(self.cancel)
        self._reset.changed.connect(self.reset)
        self._exporter = Exporter(
            self._export_button,
            self,
            lambda text: setattr(self._status, "value", text),
            self._fail,
            alive=lambda: self._alive and not self._closed,
            suffix="-adapted",
        )
        viewer.layers.events.removed.connect(self._on_layer_removed)
        viewer.layers.selection.events.changed.connect(self._update_scope)
        self._orphan_watch = _Orphaned(self._on_closed)
        self.native.installEventFilter(self._orphan_watch)
        self.native.destroyed.connect(self._on_destroyed)

    # -- choices: preferences, memory -------------------------------------------------

    @staticmethod
    def _shipped(name: str) -> MZSRModel:
        from ..io.model_file import load_model

        return load_model(name)

    def _apply_preferences(self, prefs: dict[str, Any]) -> None:
        """Start from File > Preferences (napari's plugin settings)."""
        model = prefs["model"]
        self._model.value = AUTO if model in ("auto", "") else model
        devices = [value for _, value in self._devices]
        device = prefs["device"]
        if device == "cuda" and "cuda:0" in devices:
            device = "cuda:0"
        self._device.value = device if device in devices else "auto"
        self._steps.value = int(prefs["steps"])

    def _restore(self) -> list[str]:
        """The choices remembered from the last session, where they still fit; returns
        the names of those that differ from the defaults."""
        self._restoring = True
        before = {name: self._controls[name].value for name in REMEMBERED}
        try:
            stored = memory.load()
            # Memories from before version 2 hold back-projection 0, the default then,
            # not a choice: the new default ("auto") stands.
            former = stored.get("memory_version", 1) < MEMORY_VERSION
            for name, value in stored.items():
                if name not in REMEMBERED or (former and name == "back_projection"):
                    continue
                try:
                    self._controls[name].value = value
                except (ValueError, TypeError, KeyError):
                    continue  # e.g. a device or model that is gone: keep the default
        finally:
            self._restoring = False
        return [n for n in REMEMBERED if n not in QUIET and self._controls[n].value != before[n]]

    def _describe_restored(self, names: list[str]) -> str:
        """The status line that says which remembered choices came back."""
        if not names:
            return ""
        shown = []
        for name in names:
            control = self._controls[name]
            label = label_of(control)
            value = control.value
            if isinstance(control, ComboBox):
                value = control.native.currentText()
            elif isinstance(value, bool):
                value = "on" if value else "off"
            shown.append(f"{label} {value}")
        return "from your last session: " + ", ".join(shown) + " (Restore defaults forgets them)"

    def _remember(self, *_: object) -> None:
        if self._restoring:
            return
        values: dict[str, Any] = {"memory_version": MEMORY_VERSION}
        for name in REMEMBERED:
            value = self._controls[name].value
            values[name] = str(value) if isinstance(value, Path) else value
        memory.save(values)

    def reset(self) -> None:
        """Forget the remembered choices; back to the preferences and built-in defaults."""
        memory.forget()
        self._restoring = True
        try:
            for name in REMEMBERED:
                self._controls[name].value = self._defaults[name]
        finally:
            self._restoring = False
        self._apply_preferences(_plugin_defaults())
        self._status.value = "defaults restored"

    @property
    def _defaults(self) -> dict[str, Any]:
        return {
            "scope": "layer", "channel_mode": "per_layer", "model": AUTO, "model_file": "",
            "scale": 2.0, "scale_x_on": False, "scale_x": 2.0, "kernel_kind": AUTO_KERNEL,
            "variance": 2.0, "l1": 4.0, "l2": 1.0, "theta": -0.5, "preset": "g^d_2.0",
            "kernel_file": "", "steps": 10, "device": "auto", "stack_mode": "once",
            "current_only": False, "replace": False, "float_output": False,
            "show_advanced": False, "lr": "", "normalization": "auto", "seed": 0,
            "ensemble": "off", "back_projection": -1, "tile": 0, "threads": 0,
        }  # fmt: skip

    # -- option handling -------------------------------------------------------------

    def _model_source(self) -> str | None:
        value = self._model.value
        if value == AUTO:
            return None
        if value != FROM_FILE:
            return value
        path = Path(self._model_file.value)
        return str(path) if path.is_file() else ""

    def current_model(self) -> MZSRModel | None:
        """The chosen theta_M (None: "auto"), loaded once per source."""
        from ..io.model_file import load_model

        source = self._model_source()
        if source is None:
            return None
        if source == "":
            raise ValueError("choose a model file (theta_M, .pt) under 'model file'")
        if source not in self._loaded:
            self._loaded = {source: load_model(source)}
        return self._loaded[source]

    @property
    def device(self) -> str:
        """The chosen device (``"auto"``, ``"cpu"``, ``"cuda:N"``, ``"mps"``)."""
        return self._device.value

    def _model_choices(self, *_: object) -> list[tuple[str, str]]:
        added = [(label, source) for source, label in self._added.items()]
        return [*self._shipped_choices, *added, ("from file...", FROM_FILE)]

    def add_model(self, label: str, source: str, model: MZSRModel) -> None:
        """Offer a loaded ``model`` in the model list as ``label`` (its value ``source``,
        the file it was saved to) and select it; a model that serves one factor sets
        the scale to it. The model is kept loaded, next to the others, and stays in the
        list, in this session and the next, until removed."""
        self._loaded[source] = model
        self._added[source] = label
        self._save_added()
        self._model.reset_choices()
        self._model.value = source
        if len(model.info.scales) == 1:
            self._scale_x_on.value = False
            self._scale.value = model.info.scales[0]

    def _factors(self) -> tuple[float, float]:
        sy = round(float(self._scale.value), 4)
        sx = round(float(self._scale_x.value), 4) if self._scale_x_on.value else sy
        return sy, sx

    def _update_scale(self, *_: object) -> None:
        self._scale_x.visible = self._scale_x_on.value
        self._scale.label = "scale Y" if self._scale_x_on.value else "scale"
        self._update_model_advice()

    def _save_added(self) -> None:
        memory.save_models([(label, source) for source, label in self._added.items()])

    def _restore_models(self) -> None:
        """The models added in earlier sessions whose files are still there."""
        for label, source in memory.load_models():
            if Path(source).is_file():
                self._added[source] = label
        self._model.reset_choices()

    def forget_model(self) -> None:
        """Remove the selected added model from the list (its file stays on disk)."""
        source = self._model.value
        if self._added.pop(source, None) is not None:
            self._loaded.pop(source, None)
            self._save_added()
            self._model.value = AUTO
            self._model.reset_choices()

    def _on_model_changed(self, *_: object) -> None:
        self._model_file.visible = self._model.value == FROM_FILE
        self._forget_model.visible = self._model.value in self._added
        self._update_model_advice()
        self._update_kernel()

    def _kernel_preset(self) -> str | None:
        """The preset whose assumption the run makes ('auto' makes the photo one)."""
        kind = self._kernel_kind.value
        if kind == AUTO_KERNEL:
            return "photo"
        return self._preset.value if kind == "preset" else None

    def _update_model_advice(self) -> None:
        """The model line (what runs) and the warning line (what does not fit)."""
        from ..cli.model_table import summarize

        try:
            model = self.current_model()
        except Exception as exc:  # any unreadable file: say so next to the option
            self._model_info.value = ""
            self._show_warnings([plain_message(exc)])
            self._blocked = plain_message(exc)
            self._update_buttons()
            return
        if self._axial_on():
            info = model.info if model is not None else self._shipped(AXIAL_MODEL).info
            text = summarize(info).label()
            self._model_info.value = text if model is not None else f"auto (isotropic Z): {text}"
            self._show_warnings([])
            self._blocked = None
            self._update_buttons()
            return
        layer = self._image.value
        rgb = bool(layer is not None and layer.rgb)
        preset = self._kernel_preset()
        degradation = PRESETS[preset].degradation if preset else "direct"
        choice = choose(model, self._factors(), rgb, degradation, preset)
        if choice.info is None:
            self._model_info.value = "auto: no shipped model fits"
        else:
            summary = summarize(choice.info)
            text = summary.label() if model is not None else f"auto: {summary.label()}"
            if model is not None and model.source and self._model.value == FROM_FILE:
                text = f"{text} ({Path(model.source).name})"
            self._model_info.value = text
            self._model_info.tooltip = summary.tooltip()
        self._show_warnings(list(choice.warnings))
        # What make_job would refuse: Run and Preview wait until it is fixed.
        unfit = choice.info is None or (
            model is not None and not choice.info.supports_scale(self._factors())
        )
        self._blocked = choice.warnings[0] if unfit and choice.warnings else None
        self._update_buttons()

    def _show_warnings(self, warnings: list[str]) -> None:
        self._model_warning.value = "\n".join(f"\u26a0 {w}" for w in warnings)
        self._model_warning.visible = bool(warnings)

    def _on_image_changed(self, *_: object) -> None:
        layer = self._image.value
        slices = bool(layer is not None and split_axes(layer.data.shape, layer.rgb)[0])
        self._stack_mode.enabled = slices
        self._current_only.enabled = slices
        self._update_scope()
        self._update_model_advice()
        self._update_axial()

    def _axial_factor(self) -> tuple[float | None, str]:
        """The Z factor of the chosen layer (typed, else from its scale) and the line
        that says where it came from, or why there is none."""
        layer = self._image.value
        factor, text = layer_z_factor(layer)
        typed = float(self._z_factor.value)
        if typed <= 0 or layer is None or layer.rgb or layer.data.ndim != 3:
            return factor, text
        try:
            typed = check_axial_factor(typed)
        except ValueError as exc:
            return None, f"isotropic Z: {plain_message(exc)}"
        return typed, f"Z x{typed:g} typed under 'Z factor'"

    def _axial_on(self) -> bool:
        """Whether Run makes the chosen layer isotropic along Z."""
        return bool(self._isotropic.value and self._axial_factor()[0] is not None)

    def _update_axial(self) -> None:
        """Offer "isotropic Z" for (Z, Y, X) layers, with the factor their scale gives;
        in that mode the controls of 2-D super-resolution are greyed out."""
        layer = self._image.value
        factor, text = self._axial_factor()
        offered = bool(layer is not None and layer.data.ndim == 3 and not layer.rgb)
        self._isotropic.visible = self._z_factor.visible = offered
        self._isotropic.enabled = factor is not None
        self._axial_info.visible = offered
        self._axial_info.value = text
        on = self._axial_on()
        self._axial_sigma.visible = on
        for control in (
            self._scale, self._scale_x_on, self._scale_x, self._kernel_kind, self._variance,
            self._l1, self._l2, self._theta, self._preset, self._kernel_file,
            self._kernel_layer, self._ensemble, self._back_projection,
        ):  # fmt: skip
            control.enabled = not on
        if on:
            self._stack_mode.enabled = self._current_only.enabled = False
        self._update_buttons()

    def _layers_to_run(self) -> list[Image]:
        """The layers the scope control stands for, the chosen one first."""
        layer = self._image.value
        if layer is None:
            return []
        scope = self._scope.value
        if scope == "layer":
            return [layer]
        if scope == "selected":
            chosen = [x for x in self._viewer.layers.selection if isinstance(x, Image)]
            ordered = [x for x in self._viewer.layers if x in chosen]
            return sorted(ordered, key=lambda x: x is not layer)
        return [layer] + [
            other
            for other in self._viewer.layers
            if other is not layer and isinstance(other, Image) and _same_place(other, layer)
        ]

    def _update_scope(self, *_: object) -> None:
        several = self._scope.value != "layer"
        self._channel_mode.visible = several
        self._scope_info.visible = several
        if several:
            names = [layer.name for layer in self._layers_to_run()]
            self._scope_info.value = (
                f"{len(names)} layer{'s' if len(names) != 1 else ''}: {', '.join(names)}"
                if names
                else "no layers: select image layers in the layer list"
            )

    def _kernel(self) -> tuple[np.ndarray | str, str]:
        """The chosen blur kernel (or :data:`ESTIMATE`) and a description of it;
        ValueError if it is bad."""
        kind = self._kernel_kind.value
        if kind == AUTO_KERNEL:
            return AUTO_KERNEL, "auto (photo assumption, noise matched, self-checked)"
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
                raise ValueError("choose a kernel file (.mat, .npy or .tif) under 'kernel file'")
            return load_kernel(path), f"file {path}"
        layer = self._kernel_layer.value
        if layer is None:
            raise ValueError("choose the image layer that holds the kernel under 'kernel layer'")
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
        self._update_model_advice()
        label = self._kernel_preview.native
        try:
            kernel, text = self._kernel()
        except (ValueError, FileNotFoundError) as exc:
            label.clear()
            label.setText(str(exc))
            return
        if isinstance(kernel, str) and kernel == AUTO_KERNEL:
            label.clear()
            label.setText("no blur (1 x 1); falls back to Lanczos where it does not pay")
            label.setToolTip(PRESETS["photo"].description)
            return
        if isinstance(kernel, str):
            label.clear()
            label.setText(f"{text} when run")
            label.setToolTip("a Gaussian fitted to the image's spectrum, in a fraction of a second")
            return
        label.setPixmap(_kernel_pixmap(kernel))
        size = kernel.shape[0]
        label.setToolTip(f"{size}x{size} kernel ({text})")

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

    def _visible_region(self, layer: Image) -> tuple[slice, slice]:
        """Rows and columns of ``layer``'s shown slice that the canvas shows (the whole
        slice before the canvas was drawn), cut to :data:`PREVIEW_MAX_SIDE`."""
        end = layer.data.ndim - (1 if layer.rgb else 0)
        shape = tuple(int(n) for n in layer.data.shape[end - 2 : end])
        corners = np.asarray(layer.corner_pixels, dtype=float)[:, -2:]
        if not np.all(corners[1] > corners[0]):  # not drawn yet: all of the slice
            corners = np.array([[0.0, 0.0], [shape[0] - 1.0, shape[1] - 1.0]])
        kernel, _ = self._kernel()
        min_side = kernel.shape[0] if isinstance(kernel, np.ndarray) else 1
        return visible_region(corners, shape, max_side=PREVIEW_MAX_SIDE, min_side=min_side)

    def _values(self, preview: bool = False) -> Values:
        layers = self._layers_to_run()
        if not layers:
            if self._image.value is None:
                raise ValueError("choose an image layer under 'image'")
            raise ValueError("no layers to run: select image layers in the layer list")
        kernel, kernel_text = self._kernel()
        tile = int(self._tile.value)
        return Values(
            layers=layers,
            indices=[self._slice_index(layer) for layer in layers],
            model=self.current_model(),
            scale=self._factors(),
            kernel=kernel,
            kernel_text=kernel_text,
            preset=self._kernel_preset(),
            steps=int(self._steps.value),
            device=self._device.value,
            seed=int(self._seed.value),
            lr_text=self._lr.value,
            normalization=self._normalization.value,
            mode=self._stack_mode.value,
            current_only=self._current_only.value,
            replace=self._replace.value,
            float_output=self._float_output.value,
            ensemble=None if self._ensemble.value == "off" else self._ensemble.value,
            back_projection=None
            if self._back_projection.value < 0
            else int(self._back_projection.value),
            tile=tile or None,
            shared=self._channel_mode.value == "shared",
            region=self._visible_region(layers[0]) if preview else None,
            threads=int(self._threads.value) or "auto",
        )

    def _axial_values(self) -> AxialValues:
        sigma = float(self._axial_sigma.value)
        typed = float(self._z_factor.value)
        return AxialValues(
            z_factor=typed if typed > 0 else None,
            layers=self._layers_to_run(),
            model=self.current_model(),
            sigma=sigma if sigma > 0 else None,
            steps=int(self._steps.value),
            device=self._device.value,
            seed=int(self._seed.value),
            normalization=self._normalization.value,
            float_output=self._float_output.value,
            replace=self._replace.value,
        )

    def _make_job(self, preview: bool = False) -> Job | AxialJob:
        if self._axial_on():
            if preview:
                raise ValueError("Preview is for 2-D super-resolution; untick 'isotropic Z'")
            return make_axial_job(self._axial_values())
        job = make_job(self._values(preview))
        model = job.tasks[0].options.model
        job.settings = {"model": model.info.name, "model_source": model.source, **job.settings}
        return job

    # -- running ---------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether a run is in progress."""
        return self.worker is not None

    def run(self) -> None:
        """Start super-resolving the chosen layers (what the Run button does).

        Bad options are reported in the status line and as a notification, and
        nothing starts.
        """
        self._start(preview=False)

    def preview(self) -> None:
        """One adaptation step on the visible region of the shown slice (the Preview
        button): a temporary layer that the next full run replaces."""
        self._start(preview=True)

    def _start(self, preview: bool) -> None:
        if self.running:
            return
        try:
            job = self._make_job(preview)
        except Exception as exc:  # bad option or unreadable file: tell the user, change nothing
            self._fail(plain_message(exc))
            return
        self._job = job
        self._cancel_reason = None
        worker = work_axial(job) if isinstance(job, AxialJob) else work(job)
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(self._on_returned)
        worker.aborted.connect(self._on_aborted)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self._set_running(True)
        self._progress.value = 0
        self._status.native.setStyleSheet("")
        self._status.value = "starting the preview..." if preview else "starting..."
        names = ", ".join(task.layer.name for task in job.tasks)
        self._activity = activity_progress(total=0, desc=f"MZSR: {names}")
        self._eta = TimeLeft()
        self._started = time.monotonic()
        worker.start()

    def cancel(self, reason: str | None = None) -> None:
        """Stop the run after the current step; no layer is added. ``reason`` is shown
        in the status line."""
        if self.worker is not None:
            self._cancel_reason = reason
            if self._alive:
                self._status.value = "cancelling..."
            self.worker.quit()

    def _set_running(self, running: bool) -> None:
        self._cancel_button.enabled = running
        self._update_buttons(running)

    def _update_buttons(self, running: bool | None = None) -> None:
        """Run and Preview: enabled unless a run is going or the inputs do not fit (the
        reason is their tooltip; isotropic Z has no preview)."""
        running = self.running if running is None else running
        blocked, axial = self._blocked, self._axial_on()
        self._run_button.enabled = not running and blocked is None
        self._preview_button.enabled = not running and blocked is None and not axial
        self._run_button.tooltip = TOOLTIPS["run"] if blocked is None else f"cannot run: {blocked}"
        preview = TOOLTIPS["preview"] if not axial else "no preview in isotropic-Z mode"
        self._preview_button.tooltip = preview if blocked is None else f"cannot run: {blocked}"

    def _fail(self, message: str) -> None:
        """Keep the reason in the widget (the notification may be cut off or gone)."""
        self._status.native.setStyleSheet(ERROR_STYLE)
        self._status.value = f"failed: {message}"
        show_error(f"MZSR: {message}")

    def _on_progress(self, p: JobProgress | str) -> None:
        if not self._alive or self.worker is None or self.worker.abort_requested:
            return
        if isinstance(p, str):
            self._status.value = p
            return
        self._progress.max = max(p.total, 1)
        self._progress.value = p.done
        parts = []
        if p.n_layers > 1:
            parts.append(f"layer {p.layer_number}/{p.n_layers} ({p.layer})")
        if p.phase == "adapt":
            parts.append(f"step {p.step}/{p.steps}")
        if p.n_slices > 1:
            parts.append(f"{p.unit} {min(p.slice_done + 1, p.n_slices)}/{p.n_slices}")
        if p.loss is not None:
            parts.append(f"loss {p.loss:.4g}")
        left = self._eta.update(p)
        if left is not None and p.done < p.total:
            parts.append(f"{format_seconds(left)} left")
        self._status.value = ", ".join(parts)
        # Last: napari's activity bar processes events while it updates, so later
        # reports (even the end of the run) may be handled inside this call.
        activity = self._activity
        if activity is not None:
            if activity.total != p.total:
                activity.total = p.total
            activity.update(p.done - activity.n)

    def _on_returned(self, outcome: Outcome) -> None:
        if not self._alive or self._closed:
            return
        if self._cancel_reason is not None:  # finished before the cancel arrived
            self._status.value = f"cancelled: {self._cancel_reason}; nothing was added"
            return
        if outcome.error is not None:
            self._fail(outcome.error)
            return
        job = self._job
        if isinstance(outcome, AxialOutcome):
            self._add_axial(job, outcome)
            return
        present = [task.layer for task, _ in outcome.results if task.layer in self._viewer.layers]
        if len(present) < len(outcome.results):
            self._status.value = "cancelled: an input layer was deleted; nothing was added"
            return
        try:
            for task, result in outcome.results:
                self._add_result(job, task, result)
        except Exception as exc:  # e.g. the viewer refused the layer: keep it unchanged
            self._fail(plain_message(exc))
            return
        self._status.value = self._summary(job, outcome)
        if not job.preview and len(outcome.results) == 1:
            result = outcome.results[0][1]
            usable = result.adapted is not None and result.adapted.uses_network
            # The last run's adapted model and the image it was adapted on.
            self._exporter.offer(result.adapted if usable else None, result.adapted_on)

    def _add_axial(self, job: AxialJob, outcome: AxialOutcome) -> None:
        """Add the isotropic results (one per layer), each over its input."""
        if any(task.layer not in self._viewer.layers for task, _, _ in outcome.results):
            self._status.value = "cancelled: an input layer was deleted; nothing was added"
            return
        layers = self._viewer.layers
        parts = [f"done in {time.monotonic() - self._started:.1f} s"]
        try:
            for task, data, sigma in outcome.results:
                src = task.layer
                linear = Affine(rotate=src.rotate, shear=src.shear, ndim=src.ndim).linear_matrix
                new = Image(data, **axial_layer(job, task, data, sigma, linear))
                source_id = str(src.unique_id)
                previous = [
                    i
                    for i, layer in enumerate(layers)
                    if job.replace
                    and layer.metadata.get("mzsr", {}).get("source_id") == source_id
                    and layer.metadata["mzsr"].get("mode") == "isotropic Z"
                ]
                for i in reversed(previous):
                    layers.pop(i)
                if previous:
                    layers.insert(previous[0], new)
                else:
                    layers.append(new)
                kind = "estimated" if task.options.estimate else "given"
                sigma_text = f", axial sigma {sigma:.2f} px ({kind})" if sigma is not None else ""
                parts.append(f"{src.name}: Z x{task.z_factor:g}{sigma_text}")
        except Exception as exc:  # e.g. the viewer refused the layer: keep it unchanged
            self._fail(plain_message(exc))
            return
        parts.append(f"model {job.settings['model']}")
        self._status.value = ", ".join(parts)

    def _summary(self, job: Job, outcome: Outcome) -> str:
        seconds = time.monotonic() - self._started
        task, result = outcome.results[0]
        what = "preview" if job.preview else "done"
        parts = [f"{what} in {seconds:.1f} s"]
        if len(outcome.results) > 1:
            parts.append(f"{len(outcome.results)} layers")
        steps = task.options.steps
        kept = result.steps_taken
        if steps and kept and min(kept) < steps:
            low, high = min(kept), max(kept)
            span = f"{low}" if low == high else f"{low}-{high}"
            parts.append(f"{span} of {steps} steps kept (steps that raised the loss were undone)")
        parts.append(f"model {task.options.model.info.name}")
        if len(outcome.results) == 1:
            parts.append(f"intensities {result.intensity.describe()}")
        else:
            for task, result in outcome.results[:3]:
                parts.append(f"intensities of {task.layer.name}: {result.intensity.describe()}")
        estimate = result.kernel_estimate
        if estimate is not None:
            parts.append(f"kernel {estimate.describe()}")
        if any(c is not None for c in result.self_checks):
            parts.append(result.describe_checks())
        if result.back_projection:
            parts.append(result.describe_back_projection())
        return ", ".join(parts)

    def _on_aborted(self) -> None:
        if self._alive:
            reason = f": {self._cancel_reason}" if self._cancel_reason else ""
            self._status.value = f"cancelled{reason}; nothing was added"

    def _on_finished(self) -> None:
        self.worker = None
        self._job = None
        if self._activity is not None:
            self._activity.close()
            self._activity = None
        if self._alive:
            self._set_running(False)

    def _on_layer_removed(self, event: Any) -> None:
        job = self._job
        if job is not None and self.running and any(event.value is x for x in job.layers):
            self.cancel(f"the input layer {event.value.name!r} was deleted")

    def _on_closed(self) -> None:
        """The dock's "x": stop the run, add nothing, let go of the viewer's events."""
        self._closed = True
        self.cancel("the widget was closed")
        self.calibration.cancel()
        self._disconnect()

    def _on_destroyed(self, *_: object) -> None:
        self._alive = False
        if self.worker is not None:
            self.worker.quit()
        self.calibration.cancel()
        self._disconnect()

    def _disconnect(self) -> None:
        for emitter, callback in (
            (self._viewer.layers.events.removed, self._on_layer_removed),
            (self._viewer.layers.selection.events.changed, self._update_scope),
        ):
            try:
                emitter.disconnect(callback)
            except (RuntimeError, TypeError, ValueError):
                pass  # already gone with the viewer

    def show_help(self, *_: object) -> None:
        """A window explaining every control and the models (the Help link)."""
        from qtpy.QtWidgets import QDialog, QTextBrowser, QVBoxLayout

        described = [(label_of(self._controls[name]), text) for name, text in TOOLTIPS.items()]
        described += [(label_of(c), c.tooltip) for c in (self._forget_model, self._z_factor)]
        html = help_html(described, self.calibration.help_rows(), self._summaries.values())
        dialog = QDialog(self.native)
        dialog.setWindowTitle("MZSR super-resolution: help")
        browser = QTextBrowser(dialog)
        browser.setOpenExternalLinks(True)
        browser.setHtml(html)
        layout = QVBoxLayout(dialog)
        layout.addWidget(browser)
        dialog.resize(640, 720)
        dialog.show()
        self._help_dialog = dialog

    def _add_result(self, job: Job, task: Any, result: Any) -> Image:
        """Add (or swap in) a result layer, placed to overlay its input exactly."""
        new = result_layer(job, task, result)
        source_id = str(task.layer.unique_id)
        layers = self._viewer.layers

        def replaced(layer: Any) -> bool:
            info = layer.metadata.get("mzsr", {})
            if info.get("source_id") != source_id:
                return False
            # Previews are temporary: any new result replaces them.
            return "preview" in info or (job.replace and not job.preview)

        previous = [i for i, layer in enumerate(layers) if replaced(layer)]
        if previous:
            position = previous[0]
            for i in reversed(previous):
                layers.pop(i)
            layers.insert(position, new)
        else:
            layers.append(new)
        return new


def _same_place(a: Image, b: Image) -> bool:
    """Whether two layers look like channels of one image: same shape, grey, same
    scale and place, and not a result of this plugin."""
    return (
        a.data.shape == b.data.shape
        and not a.rgb
        and not b.rgb
        and "mzsr" not in a.metadata
        and np.allclose(a.scale, b.scale)
        and np.allclose(a.translate, b.translate)
    )
