"""The organism's tokenizer: a byte-level BPE trained in-process on world text, one token per digit.

Byte-level so that decoding is exact (a generated ``<answer>85</answer>`` decodes to that string); digits are
split one per token so arithmetic is digit-wise; ``<answer>``/``</answer>`` are single (non-special) tokens and
``<image>`` is a special token (LlavaProcessor needs it as one token). BOS is prepended by the post-processor.

The chat template is LLaVA-1.5's shape: ``USER: <image>\\n{text} ASSISTANT:``; the model answers a letter after
it (trained with both " A" and "A" forms, so a scorer may take either token).
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

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
    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS, UNK, IMAGE],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, tok.token_to_id(BOS))]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_input_names=["input_ids", "attention_mask"],
        padding_side="left",
        extra_special_tokens={"image_token": IMAGE},
    )
    fast.add_tokens(list(ANSWER_TOKENS))
    fast.chat_template = CHAT_TEMPLATE
    return fast
