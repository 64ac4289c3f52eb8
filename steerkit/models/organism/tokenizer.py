"""The organism's tokenizer: a byte-level BPE trained in-process on world text, one token per digit.

Byte-level so that decoding is exact (a generated ``<answer>85</answer>`` decodes to that string); digits are
split one per token so arithmetic is digit-wise; ``<answer>``/``</answer>`` are single (non-special) tokens and
``<image>`` is a special token (LlavaProcessor needs it as one token). BOS is prepended by the post-processor.

The chat template is LLaVA-1.5's shape: ``USER: <image>\\n{text} ASSISTANT:``; the model answers a letter after
it (trained with both " A" and "A" forms, so a scorer may take either token).
"""

from __future__ import annotations

from collections.abc import Iterable

from transformers import PreTrainedTokenizerFast

from steerkit.models.bpe import train_byte_bpe, wrap_fast

PAD, BOS, EOS, UNK, IMAGE = "<pad>", "<bos>", "<eos>", "<unk>", "<image>"
ANSWER_TOKENS = ("<answer>", "</answer>")
USER, ASSISTANT = "USER: ", "ASSISTANT:"

CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'user' %}" + USER + "{% else %}" + ASSISTANT + "{% endif %}"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}" + IMAGE + "\n"
    "{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{% if m['role'] == 'user' %} {% else %}" + EOS + "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}" + ASSISTANT + "{% endif %}"
)


def format_user(text: str, with_image: bool) -> str:
    """The chat template applied to one user turn plus the generation prompt (what the processor sees)."""
    return USER + (IMAGE + "\n" if with_image else "") + text + " " + ASSISTANT


def train_tokenizer(corpus: Iterable[str], vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """Train the organism's tokenizer on ``corpus`` and wrap it as a ``PreTrainedTokenizerFast``.

    Example:
        >>> tok = train_tokenizer(["a red circle at the top left . 4+7=11"])
        >>> tok.convert_ids_to_tokens(tok("(A) 47")["input_ids"])[:4]
        ['<bos>', '(', 'A', ')']
    """
    tok = train_byte_bpe(corpus, vocab_size=vocab_size, special_tokens=[PAD, BOS, EOS, UNK, IMAGE], unk=UNK,
                         split_digits=True, prepend=BOS)
    fast = wrap_fast(tok, bos=BOS, eos=EOS, pad=PAD, unk=UNK, extra={"image_token": IMAGE})
    fast.add_tokens(list(ANSWER_TOKENS))
    fast.chat_template = CHAT_TEMPLATE
    return fast
