"""The "calibrate from pairs" section of the dock widget: its controls, a worker with
progress, and the profile added to the owner's model list. The values become options
and the work runs in :mod:`napari_mzsr.plugin.calibration_job`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
    create_widget,
)
from napari.layers import Image
from napari.utils.notifications import show_error

from .calibration_job import (
    METHODS,
    SOURCES,
    CalibrationOutcome,
    CalibrationValues,
    calibration_work,
    make_calibration,
    profile_label,
)
from .calibration_job import summary as calibration_summary
from .export_job import Exporter
from .help import label_of
from .jobs import format_seconds, plain_message
from .style import ERROR_STYLE, SCALE_DECIMALS

if TYPE_CHECKING:
    from ..io.model_file import MZSRModel


BUTTONS = ("calibrate", "cancel", "export")


class ModelOwner(Protocol):
    """What the section needs of the widget it sits in (the imports run one way: the
    widget imports this module, never the reverse)."""

    device: str

    def current_model(self) -> MZSRModel | None: ...

    def add_model(self, label: str, source: str, model: MZSRModel) -> None: ...


CALIBRATION_TOOLTIPS = {
    "show": "calibrate the model to your camera or microscope from a few registered real "
    "(LR, HR) pairs of the same field, starting from the model chosen above; the profile is "
    "saved and added to the model list",
    "source": "one pair from two image layers, or every pair of a folder (files such as "
    "001L.png / 001H.png or a_LR.tif / a_HR.tif; an LR image stored at the HR size is read "
    "back on its grid)",
    "lr": "the low-resolution shot (2-D grey or RGB)",
    "hr": "the high-resolution shot of the same field, registered to the LR one",
    "folder": "the folder of (LR, HR) pairs",
    "scale": "magnification from LR to HR: auto (the lowest value) measures it from the pairs "
    "(their size ratio, or the interpolation period of an LR image stored at the HR size); "
    "a typed factor more than 1% from the measured one is refused. The profile serves "
    "exactly this factor",
    "method": "DRTL adds synthetic distortions weighted by how their gradient relates to "
    "your pairs'; the meta-learning variant uses them as inner tasks; plain fine-tune uses "
    "the pairs alone",
    "steps": "updates (about 1 s each for fine-tune and 2 s for DRTL on one CPU core)",
    "save_to": "the profile file (.pt) to write",
    "overwrite": "replace the file if it exists",
    "calibrate": "start the calibration in the background; the model line switches to the "
    "profile when it is done",
    "cancel": "stop the calibration; nothing is saved",
    "export": "write the last profile as a BioImage.IO package (.zip) that runs in other "
    "tools without napari-mzsr (no adaptation there), tested on the first pair's LR image",
}


class CalibrationSection(Container):
    """The "calibrate from pairs" section of the dock widget (its ``owner``): controls,
    a worker with progress, and the profile added to the owner's model list."""

    def __init__(self, owner: ModelOwner) -> None:
        super().__init__()
        self._owner = owner
        self.worker = None
        self._started = 0.0
        self._show = CheckBox(text="calibrate from pairs")
        self._source = ComboBox(label="pairs from", choices=SOURCES, value="layers")
        self._lr = create_widget(annotation=Image, label="LR layer")
        self._hr = create_widget(annotation=Image, label="HR layer")
        self._folder = FileEdit(label="pairs folder", mode="d")
        # The minimum stands for 'auto': the scale measured from the pairs.
        self._scale = FloatSpinBox(label="pair scale", value=1.0, min=1.0, max=16.0, step=0.1)
        self._scale.native.setDecimals(SCALE_DECIMALS)
        self._scale.native.setSpecialValueText("auto (measured from the pairs)")
        self._method = ComboBox(label="method", choices=METHODS, value="drtl")
        self._steps = SpinBox(label="updates", value=300, min=1, max=100_000)
        self._save_to = FileEdit(label="save profile to", mode="w", filter="*.pt")
        self._overwrite = CheckBox(text="replace existing file")
        self._calibrate_button = PushButton(text="Calibrate")
        self._cancel_button = PushButton(text="Cancel calibration", enabled=False)
        self._export_button = PushButton(text="Export profile...", enabled=False)
        self._progress = ProgressBar(label="calibration", value=0, min=0, max=1)
        self._status = Label(label="")
        self._status.native.setWordWrap(True)
        self._body = Container(
            widgets=[
                self._source,
                self._lr,
                self._hr,
                self._folder,
                self._scale,
                self._method,
                self._steps,
                self._save_to,
                self._overwrite,
                Container(
                    widgets=[self._calibrate_button, self._cancel_button, self._export_button],
                    layout="horizontal",
                ),
                self._progress,
                self._status,
            ]
        )
        self.extend([self._show, self._body])
        for name, text in CALIBRATION_TOOLTIPS.items():
            attr = f"_{name}_button" if name in BUTTONS else f"_{name}"
            getattr(self, attr).tooltip = text
        self._show.changed.connect(self._update_visible)
        self._source.changed.connect(self._update_visible)
        self._calibrate_button.changed.connect(self.start)
        self._cancel_button.changed.connect(self.cancel)
        # The last profile, with its first pair's LR image as the package's test image.
        self._exporter = Exporter(
            self._export_button, self, lambda text: setattr(self._status, "value", text), self._fail
        )
        # The layer choices follow the viewer's layers through the dock widget's
        # reset_choices, which napari calls on the whole container.
        self._update_visible()

    def help_rows(self) -> list[tuple[str, str]]:
        """``(label on screen, what it does)`` of every control, for the Help window."""
        rows = []
        for name, text in CALIBRATION_TOOLTIPS.items():
            control = getattr(self, f"_{name}_button" if name in BUTTONS else f"_{name}")
            rows.append((label_of(control), text))
        return rows

    @property
    def running(self) -> bool:
        """Whether a calibration is in progress."""
        return self.worker is not None

    def _update_visible(self, *_: object) -> None:
        self._body.visible = self._show.value
        layers = self._source.value == "layers"
        self._lr.visible = self._hr.visible = layers
        self._folder.visible = not layers

    def _values(self) -> CalibrationValues:
        lr, hr = self._lr.value, self._hr.value
        owner = self._owner
        scale = float(self._scale.value)
        return CalibrationValues(
            source=self._source.value,
            lr=None if lr is None else lr.data,
            hr=None if hr is None else hr.data,
            lr_name="" if lr is None else lr.name,
            hr_name="" if hr is None else hr.name,
            folder=str(self._folder.value) if str(self._folder.value) not in ("", ".") else "",
            scale=None if scale <= 1.0 else round(scale, SCALE_DECIMALS),
            method=self._method.value,
            steps=int(self._steps.value),
            save_to=str(self._save_to.value) if str(self._save_to.value) not in ("", ".") else "",
            overwrite=bool(self._overwrite.value),
            # The model chosen above is the start (None: "auto", the calibration's default).
            model=owner.current_model(),
            device=owner.device,
        )

    def start(self, *_: object) -> None:
        """Check the values, then calibrate in a worker (the Calibrate button)."""
        if self.running:
            return
        try:
            job = make_calibration(self._values())
        except Exception as exc:  # bad value or unreadable pairs: say so, start nothing
            self._fail(plain_message(exc))
            return
        worker = calibration_work(job)
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(self._on_returned)
        worker.aborted.connect(self._on_aborted)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self._set_running(True)
        self._progress.max, self._progress.value = job.options.steps, 0
        self._status.native.setStyleSheet("")
        if job.folder is not None:
            self._status.value = f"reading the pairs of {job.folder.name}, then calibrating..."
        else:
            pairs = "pair" if len(job.pairs) == 1 else "pairs"
            self._status.value = f"calibrating on {len(job.pairs)} {pairs}..."
        self._started = time.monotonic()
        worker.start()

    def cancel(self, *_: object) -> None:
        """Stop after the current update; nothing is saved."""
        if self.worker is not None:
            self.worker.quit()

    def _set_running(self, running: bool) -> None:
        self._calibrate_button.enabled = not running
        self._cancel_button.enabled = running

    def _fail(self, message: str) -> None:
        self._status.native.setStyleSheet(ERROR_STYLE)
        self._status.value = f"failed: {message}"
        show_error(f"MZSR calibration: {message}")

    def _on_progress(self, report: Any) -> None:
        done, steps = report.step + 1, report.steps
        self._progress.max, self._progress.value = steps, done
        left = (time.monotonic() - self._started) / done * (steps - done)
        self._status.value = (
            f"update {done}/{steps}, loss {report.loss:.4g}, {format_seconds(left)} left"
        )

    def _on_returned(self, outcome: CalibrationOutcome) -> None:
        if outcome.error is not None:
            self._fail(outcome.error)
            return
        self.add_profile(outcome.profile, outcome.path)
        self._status.value = calibration_summary(outcome, time.monotonic() - self._started)
        self._exporter.offer(outcome.profile, outcome.sample)

    def add_profile(self, profile: Any, path: Path) -> None:
        """Put a saved profile in the owner's model list, select it and set the scale
        it serves."""
        self._owner.add_model(profile_label(profile, path), str(path), profile)

    def _on_aborted(self) -> None:
        self._status.value = "calibration cancelled; nothing was saved"

    def _on_finished(self) -> None:
        self.worker = None
        try:
            self._set_running(False)
        except RuntimeError:
            pass  # the widget is already gone
