"""Dedicated OCR engines for the ``ocr_external`` gap mode: a rendered problem in, its transcript out.

An :class:`OcrEngine` is any callable ``PIL image -> str`` (an optional ``name`` attribute is recorded in the results).
:class:`RapidOcrEngine` is the default: RapidOCR's PP-OCR detection, direction-classification and recognition ONNX
models, which ship inside the ``rapidocr`` wheel and run on onnxruntime, offline.

Example:
    >>> engine = RapidOcrEngine()
    >>> engine(render_text("What is 17 + 25 ?"))
    'What is 17 + 25 ?'
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from PIL import Image

from steerkit.errors import GapError

INSTALL_HINT = "pip install rapidocr onnxruntime  (or pip install 'steerkit[ocr]')"


@runtime_checkable
class OcrEngine(Protocol):
    """A callable that transcribes the text of an image into one string."""

    def __call__(self, image: Image.Image) -> str: ...


def engine_name(engine: Any) -> str:
    """The name recorded for ``engine``: its ``name`` attribute, else its function or class name."""
    return str(getattr(engine, "name", None) or getattr(engine, "__name__", None) or type(engine).__name__)


def image_key(image: Image.Image) -> str:
    """A hash of an image's mode, size and pixels (two renders of the same text and config share it)."""
    h = hashlib.sha256(f"{image.mode}:{image.size}".encode())
    h.update(image.tobytes())
    return h.hexdigest()


def join_lines(boxes: Sequence[Any], texts: Sequence[str], sep: str = " ") -> str:
    """Detected text pieces joined in reading order: rows top to bottom, pieces within a row left to right.

    ``boxes`` are quadrilaterals (4 x 2 corner points). Two pieces are on the same row when their vertical centres
    lie within half the smaller box height of each other (a detector may split one printed line into several
    boxes, and their tops differ by a pixel or two).

    Example:
        >>> join_lines([[[0, 50], [9, 50], [9, 60], [0, 60]], [[0, 0], [9, 0], [9, 10], [0, 10]]], ["b", "a"])
        'a b'
    """
    pieces = []
    for box, text in zip(boxes, texts):
        ys = [float(p[1]) for p in box]
        xs = [float(p[0]) for p in box]
        pieces.append(((min(ys) + max(ys)) / 2, max(ys) - min(ys), min(xs), text.strip()))
    pieces.sort(key=lambda p: (p[0], p[2]))
    rows: list[list[tuple[float, float, float, str]]] = []
    for piece in pieces:
        last = rows[-1] if rows else None
        if last is not None and abs(piece[0] - last[-1][0]) <= 0.5 * min(piece[1], last[-1][1]):
            last.append(piece)
        else:
            rows.append([piece])
    words = [p[3] for row in rows for p in sorted(row, key=lambda p: p[2]) if p[3]]
    return sep.join(words)


class RapidOcrEngine:
    """RapidOCR (PP-OCR det + cls + rec ONNX models from the ``rapidocr`` wheel) as an :class:`OcrEngine`.

    ``rapidocr`` is imported and the pipeline built on the first call (or :meth:`load`), once. The model files are
    passed by path from the wheel's own ``models`` folder, so RapidOCR's download branch (taken when no
    ``model_path`` is set and a file is missing) is never reached; a wheel without exactly one det, rec and cls
    ONNX file raises :class:`~steerkit.errors.GapError` instead of going to the network. Transcripts are cached by
    :func:`image_key` (``cache_size`` entries, least recently used dropped).

    Args:
        threads: onnxruntime intra-op threads (None: onnxruntime's default, all cores).
        use_cls: run the 0/180-degree line classifier (steerkit's renderers never rotate text; off by default
            because it can only flip a correctly oriented line).
        line_sep: what joins the detected lines (a rendered problem is one wrapped paragraph: a space).
        cache_size: how many transcripts to keep.
        params: extra RapidOCR config overrides (``{"Global.text_score": 0.3}``).
    """

    def __init__(self, *, threads: int | None = None, use_cls: bool = False, line_sep: str = " ",
                 cache_size: int = 4096, params: dict[str, Any] | None = None) -> None:
        self.threads = threads
        self.use_cls = use_cls
        self.line_sep = line_sep
        self.cache_size = cache_size
        self.params = dict(params or {})
        self._ocr: Any = None
        self._models: dict[str, Path] = {}
        self._version = ""
        self._cache: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """``rapidocr <version> (<det model>, <rec model>)`` once loaded, else ``rapidocr``."""
        if not self._models:
            return "rapidocr"
        return f"rapidocr {self._version} ({self._models['det'].stem}, {self._models['rec'].stem})"

    @staticmethod
    def packaged_models(models_dir: Path) -> dict[str, Path]:
        """The det, rec and cls ONNX files of a rapidocr ``models`` folder (exactly one each, else GapError)."""
        found = {}
        for task in ("det", "rec", "cls"):
            files = sorted(p for p in models_dir.glob("*.onnx") if f"_{task}" in p.stem)
            if len(files) != 1:
                raise GapError(f"rapidocr's models folder {models_dir} holds {len(files)} {task} ONNX files "
                               f"({[p.name for p in files]}), expected exactly one; reinstall it "
                               f"(pip install --force-reinstall rapidocr) or pass params with explicit "
                               f"'Det.model_path', 'Rec.model_path' and 'Cls.model_path'")
            found[task] = files[0]
        return found

    def load(self) -> RapidOcrEngine:
        """Import rapidocr and build the pipeline (once); returns self. Raises GapError when it is missing."""
        with self._lock:
            if self._ocr is not None:
                return self
            try:
                import onnxruntime  # noqa: F401  (rapidocr imports it only when a model loads)
                import rapidocr
            except ImportError as e:
                raise GapError(f"the ocr_external mode's default engine needs RapidOCR and onnxruntime ({e}); "
                               f"install them: {INSTALL_HINT}, or pass run_gap(..., ocr_engine=<callable image -> "
                               "str>)") from e
            self._models = self.packaged_models(Path(rapidocr.__file__).parent / "models")
            self._version = str(getattr(rapidocr, "__version__", "") or _dist_version("rapidocr"))
            params: dict[str, Any] = {
                "Global.log_level": "warning",
                "Global.use_cls": self.use_cls,
                "Det.model_path": str(self._models["det"]),
                "Rec.model_path": str(self._models["rec"]),
                "Cls.model_path": str(self._models["cls"]),
            }
            if self.threads is not None:
                params["EngineConfig.onnxruntime.intra_op_num_threads"] = int(self.threads)
                params["EngineConfig.onnxruntime.inter_op_num_threads"] = 1
            params.update(self.params)
            self._ocr = rapidocr.RapidOCR(params=params)
            return self

    def __call__(self, image: Image.Image) -> str:
        """The text of ``image``, detected lines joined in reading order ("" when nothing is detected)."""
        key = image_key(image)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        ocr = self.load()._ocr
        out = ocr(image.convert("RGB"))
        boxes, texts = getattr(out, "boxes", None), getattr(out, "txts", None)
        text = "" if boxes is None or texts is None else join_lines(list(boxes), list(texts), self.line_sep)
        self._cache[key] = text
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return text


def _dist_version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


_DEFAULT: RapidOcrEngine | None = None


def default_engine() -> RapidOcrEngine:
    """The shared default engine (one RapidOCR pipeline and transcript cache per process), loaded."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = RapidOcrEngine()
    return _DEFAULT.load()
