"""Offline fixtures for the vectors tests: two tokenizer styles trained in-process and a tiny Llama."""

from __future__ import annotations

import functools

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from steerkit.vectors.corpus import CONCEPTS, generate_corpus

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]


def _corpus_text() -> list[str]:
    return [s.text for c in CONCEPTS for s in generate_corpus(c, 60, seed=3)]


def _wrap(tok: Tokenizer) -> PreTrainedTokenizerFast:
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B",
                                                       special_tokens=[("<s>", tok.token_to_id("<s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", model_input_names=["input_ids", "attention_mask"])


@functools.cache
def bytelevel_tokenizer() -> PreTrainedTokenizerFast:
    """GPT-2 / Llama-3 / SmolLM style: byte-level BPE, leading space merged into the word ("Ġleft")."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(_corpus_text(), trainers.BpeTrainer(
        vocab_size=300, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    return _wrap(tok)


@functools.cache
def metaspace_tokenizer() -> PreTrainedTokenizerFast:
    """SentencePiece style (Llama-2 / Gemma conversions): "▁" marks a word start, prepended to the first word."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.train_from_iterator(_corpus_text(), trainers.BpeTrainer(vocab_size=200, special_tokens=SPECIALS,
                                                                show_progress=False))
    return _wrap(tok)


def tiny_llama(tokenizer: PreTrainedTokenizerFast, n_layers: int = 3, hidden: int = 32, seed: int = 0):
    """A tiny random LlamaForCausalLM over ``tokenizer``'s vocabulary."""
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=37,
                      num_hidden_layers=n_layers, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                      max_position_embeddings=256, pad_token_id=tokenizer.pad_token_id,
                      bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    return LlamaForCausalLM(cfg).eval()
