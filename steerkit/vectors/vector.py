"""``SteeringVector``: per-layer directions ``{layer: Tensor[d]}`` plus where they came from.

It is a ``Mapping[int, Tensor]``, so :func:`steerkit.steer` takes it directly; ``steer`` also calls
:meth:`SteeringVector.check_compatible` before hooking a model. Layer ``l`` is the output of decoder layer ``l``
(0-based), the value transformers reports as ``hidden_states[l + 1]`` for every layer but the last (see
``docs/vectors.md``).

On disk a vector is a folder (symmetric like sae-lens ``save_model`` / ``load_from_disk``)::

    <dir>/vectors.safetensors   tensors "layer.<l>", in their own dtype
    <dir>/metadata.json         method, concept, source model, sizes, norms, corpus hash, version, extra

Example:
    >>> v = SteeringVector({3: torch.ones(8)}, method="mean_shift", concept="counting", n_layers=6)
    >>> v.save("/tmp/v"); SteeringVector.load("/tmp/v") == v
    True
    >>> with steer(model, v, alpha=0.5, tokens="image"):
    ...     out = model(**inputs)
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from steerkit.errors import DataError, VectorMismatchError

#: The layer convention recorded in every vector.
LAYER_CONVENTION = "layer l = output of decoder layer l (0-based) = hidden_states[l+1] before the final norm"
_TENSORS = "vectors.safetensors"
_META = "metadata.json"


def _version() -> str:
    try:
        from steerkit import __version__

        return __version__
    except ImportError:  # steerkit imported as a namespace package (editable install, foreign cwd)
        from importlib.metadata import version

        return version("steerkit")


class SteeringVector(Mapping[int, torch.Tensor]):
    """Directions per decoder layer, with metadata; immutable, arithmetic returns new vectors.

    Args:
        vectors: ``{layer: Tensor[hidden_size]}``, 0-based layers.
        method: how it was made ("mean_shift", "probe", "sae", or a combination such as "mean").
        concept: the concept name ("spatial_relation", ...).
        source_model: the model it was extracted from (name or path).
        n_layers: the source model's number of decoder layers (checked against the target model).
        hidden_size: width of the vectors; inferred from ``vectors`` when omitted.
        corpus_hash: :func:`steerkit.vectors.corpus.corpus_hash` of the sentences used.
        extra: JSON-serialisable details (probe accuracies, SAE feature ids...).

    Example:
        >>> v = SteeringVector({0: torch.randn(16)}, method="probe", concept="negation", n_layers=2)
        >>> (2 * v).norms[0] == 2 * v.norms[0]
        True
    """

    def __init__(
        self,
        vectors: Mapping[int, torch.Tensor],
        *,
        method: str,
        concept: str,
        n_layers: int,
        source_model: str = "",
        hidden_size: int | None = None,
        corpus_hash: str = "",
        layer_convention: str = LAYER_CONVENTION,
        steerkit_version: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        if not vectors:
            raise DataError("a SteeringVector needs at least one layer")
        vecs = {int(l): v.detach() for l, v in sorted(vectors.items())}
        sizes = {tuple(v.shape) for v in vecs.values()}
        if len(sizes) != 1 or len(next(iter(sizes))) != 1:
            raise VectorMismatchError(f"every layer's vector must be 1-D of one size; got shapes {sorted(sizes)}")
        d = next(iter(sizes))[0]
        if hidden_size is not None and hidden_size != d:
            raise VectorMismatchError(f"hidden_size={hidden_size} but the vectors have size {d}")
        bad = [l for l in vecs if not 0 <= l < n_layers]
        if bad:
            raise VectorMismatchError(f"layers {bad} are outside 0..{n_layers - 1} (n_layers={n_layers})")
        self._vectors = vecs
        self.method = method
        self.concept = concept
        self.source_model = source_model
        self.hidden_size = d
        self.n_layers = int(n_layers)
        self.corpus_hash = corpus_hash
        self.layer_convention = layer_convention
        self.steerkit_version = steerkit_version or _version()
        self.extra: dict[str, Any] = dict(extra or {})

    # ------------------------------------------------------------------------------------------ Mapping
    def __getitem__(self, layer: int) -> torch.Tensor:
        return self._vectors[layer]

    def __iter__(self) -> Iterator[int]:
        return iter(self._vectors)

    def __len__(self) -> int:
        return len(self._vectors)

    def __eq__(self, other: object) -> bool:
        """Exact equality of layers, tensors (values and dtype) and metadata."""
        if not isinstance(other, SteeringVector):
            return NotImplemented
        return (self.metadata == other.metadata and list(self) == list(other)
                and all(self[l].dtype == other[l].dtype and torch.equal(self[l], other[l]) for l in self))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        layers = list(self)
        shown = layers if len(layers) <= 6 else [*layers[:3], "...", *layers[-2:]]
        return (f"SteeringVector(method={self.method!r}, concept={self.concept!r}, source={self.source_model!r}, "
                f"d={self.hidden_size}, layers={shown} of {self.n_layers})")

    # ------------------------------------------------------------------------------------------ metadata
    @property
    def layers(self) -> list[int]:
        """The layers that have a vector, ascending."""
        return list(self._vectors)

    @property
    def norms(self) -> dict[int, float]:
        """L2 norm of each layer's vector."""
        return {l: float(v.float().norm()) for l, v in self._vectors.items()}

    @property
    def metadata(self) -> dict[str, Any]:
        """Everything but the tensors, as written to ``metadata.json``."""
        return {
            "method": self.method,
            "concept": self.concept,
            "source_model": self.source_model,
            "hidden_size": self.hidden_size,
            "n_layers": self.n_layers,
            "layers": self.layers,
            "layer_convention": self.layer_convention,
            "norms": {str(l): n for l, n in self.norms.items()},
            "corpus_hash": self.corpus_hash,
            "steerkit_version": self.steerkit_version,
            "dtype": str(next(iter(self._vectors.values())).dtype).removeprefix("torch."),
            "extra": self.extra,
        }

    def _replace(self, vectors: Mapping[int, torch.Tensor], **changes: Any) -> SteeringVector:
        kw: dict[str, Any] = dict(method=self.method, concept=self.concept, n_layers=self.n_layers,
                                  source_model=self.source_model, corpus_hash=self.corpus_hash,
                                  layer_convention=self.layer_convention, steerkit_version=self.steerkit_version,
                                  extra=self.extra)
        kw.update(changes)
        return SteeringVector(vectors, **kw)

    # ------------------------------------------------------------------------------------------ I/O
    def save(self, directory: str | Path) -> Path:
        """Write ``vectors.safetensors`` + ``metadata.json`` into ``directory`` (created); returns it."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {f"layer.{l}": v.detach().cpu().contiguous() for l, v in self._vectors.items()}
        save_file(tensors, str(directory / _TENSORS), metadata={"format": "steerkit.SteeringVector"})
        (directory / _META).write_text(json.dumps(self.metadata, indent=2, sort_keys=True) + "\n")
        return directory

    @classmethod
    def load(cls, directory: str | Path, model: torch.nn.Module | None = None) -> SteeringVector:
        """Read a vector written by :meth:`save`; with ``model``, also :meth:`check_compatible` it.

        Example:
            >>> v = SteeringVector.load("outputs/vectors/smollm2/spatial_relation/mean_shift")
        """
        from safetensors.torch import load_file

        directory = Path(directory)
        if not (directory / _TENSORS).exists() or not (directory / _META).exists():
            raise DataError(f"{directory} is not a saved SteeringVector (needs {_TENSORS} and {_META}); "
                            "write one with SteeringVector.save(dir)")
        meta = json.loads((directory / _META).read_text())
        tensors = load_file(str(directory / _TENSORS))
        vectors = {int(k.split(".", 1)[1]): v for k, v in tensors.items()}
        vec = cls(vectors, method=meta["method"], concept=meta["concept"], n_layers=meta["n_layers"],
                  source_model=meta.get("source_model", ""), hidden_size=meta.get("hidden_size"),
                  corpus_hash=meta.get("corpus_hash", ""), layer_convention=meta.get("layer_convention", ""),
                  steerkit_version=meta.get("steerkit_version"), extra=meta.get("extra"))
        if model is not None:
            vec.check_compatible(model)
        return vec

    def check_compatible(self, model: torch.nn.Module) -> None:
        """Raise :class:`VectorMismatchError` unless ``model``'s text decoder has this width and layer count.

        Works for text LMs and MLLMs alike (sizes come from the adapter table).
        """
        from steerkit.models.adapters import adapter_for

        adapter = adapter_for(model)
        hidden, n_layers = adapter.hidden_size(model), adapter.num_layers(model)
        name = getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__
        if hidden != self.hidden_size:
            raise VectorMismatchError(
                f"hidden size mismatch: the {self.concept!r} vector from {self.source_model or 'its source'} has "
                f"hidden size {self.hidden_size}, but {name} has hidden size {hidden}. Extract the vector from a "
                "text model of the same width (the MLLM's own text backbone or its base LLM)."
            )
        if n_layers != self.n_layers:
            raise VectorMismatchError(
                f"layer count mismatch: the {self.concept!r} vector from {self.source_model or 'its source'} was "
                f"made for {self.n_layers} decoder layers, but {name} has {n_layers}. Extract it from the MLLM's "
                "base LLM, or select layers explicitly and rebuild: SteeringVector({l: v[l]}, n_layers=...)."
            )

    def to(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> SteeringVector:
        """A copy with tensors cast/moved."""
        return self._replace({l: v.to(device=device, dtype=dtype) for l, v in self._vectors.items()})

    # ------------------------------------------------------------------------------------------ arithmetic
    def normalize(self) -> SteeringVector:
        """Each layer's vector scaled to unit L2 norm (zero vectors stay zero)."""
        out = {}
        for l, v in self._vectors.items():
            n = v.float().norm()
            out[l] = (v / n).to(v.dtype) if n > 0 else v.clone()
        return self._replace(out)

    def __mul__(self, scalar: float) -> SteeringVector:
        if isinstance(scalar, bool) or not isinstance(scalar, (int, float)) or not math.isfinite(scalar):
            return NotImplemented
        return self._replace({l: v * scalar for l, v in self._vectors.items()})

    __rmul__ = __mul__

    def __truediv__(self, scalar: float) -> SteeringVector:
        return self * (1.0 / scalar)

    def __neg__(self) -> SteeringVector:
        return self * -1.0

    def _check_same_shape(self, other: SteeringVector) -> None:
        if not isinstance(other, SteeringVector):
            raise TypeError(f"cannot combine a SteeringVector with {type(other).__name__}")
        if other.hidden_size != self.hidden_size or other.n_layers != self.n_layers:
            raise VectorMismatchError(
                f"cannot combine vectors of hidden size {self.hidden_size} / {self.n_layers} layers "
                f"({self.source_model}) and hidden size {other.hidden_size} / {other.n_layers} layers "
                f"({other.source_model}); extract both from the same model"
            )
        if list(other) != list(self):
            raise VectorMismatchError(f"the vectors cover different layers: {self.layers} vs {other.layers}")

    def __add__(self, other: SteeringVector) -> SteeringVector:
        self._check_same_shape(other)
        return _combined([self, other], {l: self[l] + other[l] for l in self}, "sum")

    def __sub__(self, other: SteeringVector) -> SteeringVector:
        return self + (-other)

    @staticmethod
    def mean(vectors: Sequence[SteeringVector]) -> SteeringVector:
        """The layer-wise mean of several vectors (e.g. across concepts); all must share layers and sizes.

        Example:
            >>> both = SteeringVector.mean([v_spatial, v_counting])
        """
        vectors = list(vectors)
        if not vectors:
            raise DataError("mean() needs at least one vector")
        for v in vectors[1:]:
            vectors[0]._check_same_shape(v)
        stacked = {l: torch.stack([v[l] for v in vectors]).mean(0) for l in vectors[0]}
        return _combined(vectors, stacked, "mean")


def _combined(parts: Sequence[SteeringVector], tensors: Mapping[int, torch.Tensor], op: str) -> SteeringVector:
    """A vector made from several: concepts/methods joined with '+', parts recorded in ``extra``."""
    first = parts[0]

    def join(values: Sequence[str]) -> str:
        unique = list(dict.fromkeys(values))
        return unique[0] if len(unique) == 1 else "+".join(unique)

    return first._replace(
        dict(tensors),
        method=join([p.method for p in parts]) if op == "sum" else f"mean({join([p.method for p in parts])})",
        concept=join([p.concept for p in parts]),
        corpus_hash=join([p.corpus_hash for p in parts]),
        extra={"op": op, "parts": [{k: p.metadata[k] for k in ("method", "concept", "source_model",
                                                                 "corpus_hash")} for p in parts]},
    )


def match_norms(vector: SteeringVector, reference: SteeringVector) -> SteeringVector:
    """``vector``'s directions with ``reference``'s per-layer norms, so one strength grid means the same step size
    for both (a unit-norm probe at alpha 1 is otherwise a far smaller push than a raw MeanShift vector, whose norm is
    a sizeable fraction of the residual stream's).

    The reference method is recorded in ``extra["norm_matched_to"]``.

    Example:
        >>> probe_like_ms = match_norms(vecs["probe", "counting"], vecs["mean_shift", "counting"])
    """
    vector._check_same_shape(reference)
    out = {}
    for l, v in vector._vectors.items():
        n = v.float().norm()
        out[l] = (v * (reference[l].float().norm() / n)).to(v.dtype) if n > 0 else v.clone()
    return vector._replace(out, extra={**vector.extra, "norm_matched_to": reference.method})


def mean(vectors: Sequence[SteeringVector]) -> SteeringVector:
    """Layer-wise mean of several vectors (see :meth:`SteeringVector.mean`)."""
    return SteeringVector.mean(vectors)


def cosine_similarity_frame(vectors: Mapping[str, Mapping[int, torch.Tensor]], layer: int) -> Any:
    """Pairwise cosine similarity of named vectors at one layer, as a square pandas DataFrame.

    Example:
        >>> cosine_similarity_frame({"spatial": v1, "counting": v2}, layer=10)
    """
    import pandas as pd

    names = list(vectors)
    mat = torch.stack([vectors[n][layer].float() for n in names])
    mat = mat / mat.norm(dim=1, keepdim=True).clamp_min(1e-12)
    sim = (mat @ mat.T).numpy()
    return pd.DataFrame(sim, index=pd.Index(names, name="concept"), columns=names)
