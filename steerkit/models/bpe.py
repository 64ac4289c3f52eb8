"""Byte-level BPE tokenizers trained in-process, wrapped as ``PreTrainedTokenizerFast``.

One recipe for every tokenizer steerkit trains itself (the tiny offline instances and the organisms): byte-level,
so decoding is exact; BOS prepended by the post-processor, as the real families' tokenizers do; left padding.

Example:
    >>> tok = train_byte_bpe(["a red circle"], vocab_size=300, special_tokens=["<pad>", "<bos>", "<eos>"])
    >>> fast = wrap_fast(tok, bos="<bos>", eos="<eos>", pad="<pad>")
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast


def train_byte_bpe(corpus: Iterable[str], *, vocab_size: int, special_tokens: Sequence[str], unk: str | None = None,
                   split_digits: bool = False, prepend: str | None = None) -> Tokenizer:
    """Train a byte-level BPE on ``corpus``; ``special_tokens`` take the first ids in order.

    ``split_digits`` makes every digit its own token (digit-wise arithmetic); ``prepend`` (a special token, usually
    BOS) is put before every encoded text by the post-processor.
    """
    tok = Tokenizer(models.BPE(unk_token=unk))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.pre_tokenizer = (pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
                         if split_digits else byte_level)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(special_tokens),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer=trainer)
    if prepend is not None:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{prepend} $A", pair=f"{prepend} $A $B", special_tokens=[(prepend, tok.token_to_id(prepend))])
    return tok


def wrap_fast(tok: Tokenizer, *, bos: str, eos: str, pad: str, unk: str | None = None,
              extra: dict[str, str] | None = None) -> PreTrainedTokenizerFast:
    """``tok`` as a left-padding ``PreTrainedTokenizerFast`` with its special tokens named (``extra``: further named
    special tokens, e.g. ``{"image_token": "<image>"}``)."""
    kwargs: dict[str, object] = dict(tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=pad,
                                     model_input_names=["input_ids", "attention_mask"], padding_side="left")
    if unk:
        kwargs["unk_token"] = unk
    if extra:
        kwargs["extra_special_tokens"] = extra
    return PreTrainedTokenizerFast(**kwargs)
