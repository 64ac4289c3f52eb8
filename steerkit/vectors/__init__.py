"""Text steering vectors: concept corpora -> token alignment -> layer activations -> MeanShift / probe / SAE.

Example:
    >>> from steerkit.vectors import load_corpus, extract, SteeringVector
    >>> vecs = extract(lm, tokenizer, load_corpus("spatial_relation"), methods=("mean_shift", "probe"))
    >>> vecs["mean_shift"].save("outputs/vectors/spatial_relation/mean_shift")
    >>> with steerkit.steer(mllm, SteeringVector.load("outputs/vectors/spatial_relation/mean_shift"), layers=[5]):
    ...     ...

sae-lens and scikit-learn are imported only inside the functions that need them.
"""

from steerkit.vectors.activations import Activations, collect_activations
from steerkit.vectors.align import AlignedBatch, align_batch, token_anchor_flags
from steerkit.vectors.corpus import (
    CONCEPTS,
    ConceptSentence,
    available_concepts,
    corpus_hash,
    generate_corpus,
    load_corpus,
    parse_marked,
    validate_row,
    write_corpora,
)
from steerkit.vectors.methods import (
    METHODS,
    extract,
    extract_concepts,
    gemma_scope_sae_id,
    linear_probe,
    load_sae,
    mean_shift,
    probe_accuracy_frame,
    sae_vector,
)
from steerkit.vectors.vector import SteeringVector, cosine_similarity_frame, mean

__all__ = [
    "Activations", "AlignedBatch", "CONCEPTS", "ConceptSentence", "METHODS", "SteeringVector", "align_batch",
    "available_concepts", "collect_activations", "corpus_hash", "cosine_similarity_frame", "extract",
    "extract_concepts", "gemma_scope_sae_id", "generate_corpus", "linear_probe", "load_corpus", "load_sae",
    "mean", "mean_shift", "parse_marked", "probe_accuracy_frame", "sae_vector", "token_anchor_flags",
    "validate_row", "write_corpora",
]
