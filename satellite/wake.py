"""Wake word detection behind one small interface, with two engines.

* ``openwakeword``: the ``openwakeword`` package on ``tflite-runtime``, loading
  the model files (and the melspectrogram/embedding feature models) that
  ``pyopen-wakeword`` ships — openwakeword itself ships none and must never
  download. Scores come every 80 ms.
* ``micro``: ``pymicro-wakeword`` (microWakeWord), about ten times cheaper;
  scores come every 30 ms (stride 3 of 10 ms features), already averaged over
  the model's sliding window.

Both engines are imported lazily so that a satellite using one never loads
the other (openwakeword pulls in scikit-learn and onnxruntime at import).
The trigger logic (threshold, consecutive outputs, refractory period) is
shared and counts audio samples, not wall-clock time, so files processed
faster than real time behave exactly like a live microphone.

Home Assistant's wake word sensitivity (``low``/``medium``/``high``) moves every
model's threshold from the configured one by :data:`SENSITIVITY_LOGIT_STEP` in
log-odds (:func:`threshold_for_sensitivity`): ``medium`` is the configured
threshold, ``high`` a lower one, ``low`` a higher one, always inside (0, 1) and in
the same order across models.
"""

from __future__ import annotations

import abc
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from hearth.wire import SAMPLE_RATE, WakeSensitivity

_LOGGER = logging.getLogger(__name__)

BUILTIN_OPENWAKEWORD = ("okay_nabu", "hey_jarvis", "alexa", "hey_mycroft", "hey_rhasspy")
BUILTIN_MICRO = ("okay_nabu", "hey_jarvis", "alexa", "hey_mycroft")
DEFAULT_OPENWAKEWORD_THRESHOLD = 0.5
#: How far one sensitivity level moves a threshold, in log-odds (logit) units. One step is
#: about what Home Assistant Voice PE's firmware moves microWakeWord's cutoffs between its
#: levels (hey_jarvis 0.97 → 0.92, okay_nabu 0.85 → 0.69): the same step suits a cutoff
#: near 1 and openWakeWord's 0.5 (→ 0.27 / 0.73), which a fixed offset or factor does not.
SENSITIVITY_LOGIT_STEP = 1.0
_SENSITIVITY_STEPS = {WakeSensitivity.LOW: 1, WakeSensitivity.MEDIUM: 0, WakeSensitivity.HIGH: -1}


def threshold_for_sensitivity(threshold: float, sensitivity: str) -> float:
    """The score threshold for a sensitivity level, relative to the configured ``threshold``.

    ``medium`` keeps it; ``high`` (fires more readily) lowers it and ``low`` raises it by
    :data:`SENSITIVITY_LOGIT_STEP` in log-odds, so the result stays strictly inside (0, 1) and
    the mapping is strictly increasing (models keep their order). A configured 0 or 1 (fire on
    anything, never fire) is a deliberate choice and is kept at every level.
    """
    try:
        step = _SENSITIVITY_STEPS[sensitivity]
    except KeyError:
        raise ValueError(f"unknown wake word sensitivity {sensitivity!r}; one of {', '.join(WakeSensitivity.ALL)}") from None
    if step == 0 or threshold <= 0.0 or threshold >= 1.0:
        return threshold
    logit = math.log(threshold / (1.0 - threshold)) + step * SENSITIVITY_LOGIT_STEP
    return 1.0 / (1.0 + math.exp(-logit))


def thresholds_for_sensitivity(thresholds: Mapping[str, float], sensitivity: str) -> dict[str, float]:
    """:func:`threshold_for_sensitivity` for each model's configured threshold."""
    return {name: threshold_for_sensitivity(value, sensitivity) for name, value in thresholds.items()}


class WakeWordError(RuntimeError):
    """A wake word engine or model could not be loaded."""


@dataclass(frozen=True)
class Detection:
    wake_word: str
    score: float


@dataclass(frozen=True)
class ModelSpec:
    """One configured model: a built-in name or a file path, with an optional threshold."""

    model: str
    threshold: float | None = None

    @classmethod
    def parse(cls, entry: str | dict) -> "ModelSpec":
        if isinstance(entry, dict):
            return cls(str(entry["model"]), entry.get("threshold"))
        return cls(str(entry))

    @property
    def is_path(self) -> bool:
        return "/" in self.model or self.model.endswith((".tflite", ".json"))


class WakeWordDetector(abc.ABC):
    """Feed 16 kHz mono PCM16 in any chunk size; get a :class:`Detection` when a wake word fires."""

    engine: str

    def __init__(self, thresholds: dict[str, float], *, trigger_level: int = 1, refractory_s: float = 2.0) -> None:
        #: The configured threshold of each model (what ``medium`` sensitivity uses).
        self.configured_thresholds = dict(thresholds)
        #: The thresholds in force (replaced as a whole, never changed in place).
        self.thresholds = dict(thresholds)
        self.sensitivity = WakeSensitivity.MEDIUM
        self.trigger_level = trigger_level
        self.refractory_samples = int(refractory_s * SAMPLE_RATE)
        self._consecutive = {name: 0 for name in thresholds}
        self._refractory_left = 0
        self.last_scores: dict[str, float] = {}

    @property
    def wake_words(self) -> tuple[str, ...]:
        return tuple(self.thresholds)

    def set_sensitivity(self, sensitivity: str) -> None:
        """Apply a sensitivity level (ValueError for an unknown one); takes effect on the next frame.

        Call it from the thread that calls :meth:`process` (the satellite's audio loop does).
        """
        self.thresholds = thresholds_for_sensitivity(self.configured_thresholds, sensitivity)
        self.sensitivity = sensitivity

    def process(self, pcm: bytes) -> Detection | None:
        """Process audio; return the first detection in it, if any."""
        detection = None
        thresholds = self.thresholds
        for scores, samples in self._scores(pcm):
            self._refractory_left = max(0, self._refractory_left - samples)
            self.last_scores = scores
            for name, score in scores.items():
                if score >= thresholds[name]:
                    self._consecutive[name] += 1
                else:
                    self._consecutive[name] = 0
                if (
                    detection is None
                    and self._consecutive[name] >= self.trigger_level
                    and self._refractory_left == 0
                ):
                    detection = Detection(name, float(score))
            if detection is not None:
                self._refractory_left = self.refractory_samples
                self.reset()
                return detection
        return None

    def reset(self) -> None:
        """Forget buffered audio and scores (not the refractory period)."""
        self._consecutive = {name: 0 for name in self.thresholds}
        self._reset_engine()

    @abc.abstractmethod
    def _scores(self, pcm: bytes) -> Iterator[tuple[dict[str, float], int]]:
        """Yield (score per model, audio samples covered) for each model output step."""

    @abc.abstractmethod
    def _reset_engine(self) -> None: ...


class OpenWakeWordDetector(WakeWordDetector):
    """openWakeWord (``openwakeword`` + ``tflite-runtime``) with pyopen-wakeword's model files."""

    engine = "openwakeword"
    CHUNK_SAMPLES = 1280  # 80 ms

    def __init__(
        self,
        models: Sequence[ModelSpec],
        *,
        threshold: float | None = None,
        trigger_level: int = 1,
        refractory_s: float = 2.0,
    ) -> None:
        models_dir = pyopen_models_dir()
        paths: list[str] = []
        thresholds: dict[str, float] = {}
        for spec in models:
            if spec.is_path:
                path = Path(spec.model).expanduser()
                if path.suffix != ".tflite":
                    raise WakeWordError(f"openwakeword needs a .tflite model, got {path}")
            elif spec.model in BUILTIN_OPENWAKEWORD:
                path = models_dir / f"{spec.model}.tflite"
            else:
                raise WakeWordError(
                    f"unknown openwakeword model {spec.model!r}; built in: {', '.join(BUILTIN_OPENWAKEWORD)}, or a .tflite path"
                )
            if not path.is_file():
                raise WakeWordError(f"wake word model file not found: {path}")
            paths.append(str(path))
            # openwakeword names a model after its file name
            thresholds[path.stem] = spec.threshold if spec.threshold is not None else (
                threshold if threshold is not None else DEFAULT_OPENWAKEWORD_THRESHOLD
            )
        super().__init__(thresholds, trigger_level=trigger_level, refractory_s=refractory_s)
        try:
            import numpy as np
            from openwakeword.model import Model
        except ImportError as err:  # pragma: no cover - depends on the install
            raise WakeWordError(
                "the openwakeword engine needs `openwakeword` and `tflite-runtime` (with numpy<2): "
                f"pip install 'hearth-voice[satellite]' ({err})"
            ) from err
        self._np = np
        try:
            self._model = Model(
                wakeword_models=paths,
                inference_framework="tflite",
                melspec_model_path=str(models_dir / "melspectrogram.tflite"),
                embedding_model_path=str(models_dir / "embedding_model.tflite"),
            )
        except Exception as err:  # noqa: BLE001 - tflite errors are plain Exceptions
            raise WakeWordError(f"could not load openwakeword models {paths}: {err}") from err
        self._buffer = b""

    def _scores(self, pcm: bytes) -> Iterator[tuple[dict[str, float], int]]:
        self._buffer += pcm
        chunk_bytes = self.CHUNK_SAMPLES * 2
        while len(self._buffer) >= chunk_bytes:
            chunk, self._buffer = self._buffer[:chunk_bytes], self._buffer[chunk_bytes:]
            prediction = self._model.predict(self._np.frombuffer(chunk, dtype=self._np.int16))
            yield {name: float(prediction.get(name, 0.0)) for name in self.thresholds}, self.CHUNK_SAMPLES

    def _reset_engine(self) -> None:
        # Only the cheap part of openwakeword's reset(): its preprocessor reset recomputes
        # embeddings over 4 s of random audio (~130 ms of CPU), which would stall the audio loop
        # on the first frame after a detection. The refractory period covers the scores that
        # stay high while the wake word is still in the feature window.
        from collections import deque
        from functools import partial

        self._buffer = b""
        self._model.prediction_buffer = type(self._model.prediction_buffer)(partial(deque, maxlen=30))


class MicroWakeWordDetector(WakeWordDetector):
    """microWakeWord through ``pymicro-wakeword``."""

    engine = "micro"

    def __init__(
        self,
        models: Sequence[ModelSpec],
        *,
        threshold: float | None = None,
        trigger_level: int = 1,
        refractory_s: float = 2.0,
    ) -> None:
        try:
            import pymicro_wakeword
            from pymicro_wakeword import MicroWakeWord, MicroWakeWordFeatures
        except ImportError as err:  # pragma: no cover - depends on the install
            raise WakeWordError(f"the micro engine needs `pymicro-wakeword` ({err})") from err
        builtin_dir = Path(pymicro_wakeword.__file__).parent / "models"
        self._models: dict[str, object] = {}
        thresholds: dict[str, float] = {}
        for spec in models:
            if spec.is_path:
                path = Path(spec.model).expanduser()
                manifest = path if path.suffix == ".json" else path.with_suffix(".json")
            elif spec.model in BUILTIN_MICRO:
                manifest = builtin_dir / f"{spec.model}.json"
            else:
                raise WakeWordError(
                    f"unknown micro model {spec.model!r}; built in: {', '.join(BUILTIN_MICRO)}, or a .json/.tflite path"
                )
            if not manifest.is_file():
                raise WakeWordError(f"microWakeWord manifest not found: {manifest} (a .tflite needs its .json beside it)")
            try:
                model = MicroWakeWord.from_config(manifest)
                cutoff = json.loads(manifest.read_text())["micro"]["probability_cutoff"]
            except Exception as err:  # noqa: BLE001
                raise WakeWordError(f"could not load microWakeWord model {manifest}: {err}") from err
            name = model.id
            self._models[name] = model
            thresholds[name] = spec.threshold if spec.threshold is not None else (
                threshold if threshold is not None else float(cutoff)
            )
        super().__init__(thresholds, trigger_level=trigger_level, refractory_s=refractory_s)
        self._features = MicroWakeWordFeatures()
        self._feature_count = 0
        self._stride = max(getattr(m, "stride", 3) for m in self._models.values())

    def _scores(self, pcm: bytes) -> Iterator[tuple[dict[str, float], int]]:
        for features in self._features.process_streaming(pcm):
            self._feature_count += 1
            scores = {name: model.process_streaming_prob(features) or 0.0 for name, model in self._models.items()}  # type: ignore[attr-defined]
            # A model runs every `stride` feature windows (10 ms each); in between it
            # reports 0.0, which must not break a run of consecutive detections.
            if self._feature_count % self._stride == 0:
                yield scores, 160 * self._stride

    def _reset_engine(self) -> None:
        self._features.reset()
        self._feature_count = 0
        for model in self._models.values():
            model.reset()  # type: ignore[attr-defined]


def pyopen_models_dir() -> Path:
    """Where pyopen-wakeword keeps its .tflite files (found without importing its native library)."""
    import importlib.util

    spec = importlib.util.find_spec("pyopen_wakeword")
    if spec is None or not spec.submodule_search_locations:
        raise WakeWordError("the openwakeword engine loads the model files shipped by `pyopen-wakeword`; install it")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def create_detector(
    engine: str,
    models: Sequence[str | dict],
    *,
    threshold: float | None = None,
    trigger_level: int = 1,
    refractory_s: float = 2.0,
) -> WakeWordDetector:
    specs = [ModelSpec.parse(entry) for entry in models]
    if engine == "openwakeword":
        return OpenWakeWordDetector(specs, threshold=threshold, trigger_level=trigger_level, refractory_s=refractory_s)
    if engine == "micro":
        return MicroWakeWordDetector(specs, threshold=threshold, trigger_level=trigger_level, refractory_s=refractory_s)
    raise WakeWordError(f"unknown wake word engine {engine!r}")
