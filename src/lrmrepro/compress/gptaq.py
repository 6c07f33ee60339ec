"""GPTQ and GPTAQ with GPTQModel (PyPI ``gptqmodel``), the second compression backend.

GPTAQ (asymmetric calibration: each layer is calibrated against the inputs it sees in the *full-precision* model, with
the difference to the inputs of the already-quantized model as a correction term) is not in llm-compressor;
GPTQModel implements it (``QuantizeConfig(gptaq=GPTAQConfig(alpha=..., device="cpu"))``). GPTQModel 7.6.0 runs on
CPU here; its ``numpy==2.2.6`` pin clashes with the core environment (the SLURM executor plugin needs numpy >= 2.4.5),
so it has its own environment (``envs/gptqmodel.txt`` → ``.venvs/gptqmodel``, ``make env-gptqmodel``), and the
compress job runs this module's command line there (``$LRMREPRO_GPTQMODEL_PYTHON -m lrmrepro.compress.gptaq``).

What the job writes: GPTQModel's checkpoint (GPTQ v1 format: per linear module ``qweight`` int32 [in·bits/32, out]
packed along the input dimension, ``qzeros`` int32 [groups, out·bits/32] packed along the output dimension holding
zero − 1, ``scales`` fp16 [groups, out], ``g_idx`` int32 [in]; each packed tensor is a little-endian bit stream over
its 32-bit words) is kept whole in the subfolder ``gptq/`` (loadable by GPTQModel, and by vLLM's GPTQ kernels on
GPUs), and the dense checkpoint around it holds
the dequantised weights ``W[o, i] = (q[i, o] − (z[g_idx[i], o] + 1)) · scales[g_idx[i], o]`` (:func:`dequantize`,
checked against GPTQModel's own dequantisation in the tests), so transformers and vLLM load it as a dense model.
Effective bits per weight count the packed tensors (qweight, qzeros, scales, g_idx).

Settings (a recipe ``{backend: gptqmodel, gptqmodel: {...}}``): ``bits``, ``group_size`` (128), ``gptaq`` (false,
or ``{alpha: 0.25}``), ``damp_percent`` (0.05), ``act_group_aware`` (true). ``sym: true``, ``desc_act: false`` and
``pack_impl: original`` (pure torch packing: no C++ compile on first use, byte-identical output) are fixed.
Protected modules (``ignore`` beyond ``lm_head``) are not supported by this backend.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ..paths import ROOT, SRC

ENV_VAR = "LRMREPRO_GPTQMODEL_PYTHON"
FIXED = {"sym": True, "desc_act": False, "pack_impl": "original"}
DEFAULTS = {"group_size": 128, "gptaq": False, "damp_percent": 0.05, "act_group_aware": True}


def gptqmodel_python(basedir: str | os.PathLike | None = None) -> str:
    """``$LRMREPRO_GPTQMODEL_PYTHON``, else ``.venvs/gptqmodel/bin/python`` of the checkout."""
    root = Path(basedir) if basedir else ROOT
    return os.environ.get(ENV_VAR) or str(root / ".venvs" / "gptqmodel" / "bin" / "python")


# ------------------------------------------------------------------------------------------------ the GPTQ format
def unpack(packed: Any, bits: int, dim: int) -> Any:
    """Integers of ``bits`` bits from int32 words packed as a little-endian bit stream along ``dim`` (0 or 1)."""
    import torch

    words = packed.to(torch.int64) & 0xFFFFFFFF
    if dim == 1:
        words = words.t()
    n_words, cols = words.shape
    shifts = torch.arange(32, dtype=torch.int64)
    stream = ((words[:, None, :] >> shifts[None, :, None]) & 1).reshape(n_words * 32, cols)  # bit j of word w
    n = n_words * 32 // bits
    weights = (1 << torch.arange(bits, dtype=torch.int64))[None, :, None]
    values = (stream[: n * bits].reshape(n, bits, cols) * weights).sum(dim=1)
    return values.t() if dim == 1 else values


def dequantize(qweight: Any, qzeros: Any, scales: Any, g_idx: Any, bits: int) -> Any:
    """The float32 weight [out, in] of one GPTQ v1 module."""
    import torch

    q = unpack(qweight, bits, 0)                 # [in, out]
    z = unpack(qzeros, bits, 1) + 1              # [groups, out]; v1 stores zero - 1
    g = g_idx.to(torch.int64)
    w = (q - z[g]).to(torch.float32) * scales.to(torch.float32)[g]
    return w.t().contiguous()


def packed_bits(tensors: dict[str, Any], module: str, n_weights: int) -> float:
    """Storage bits of one module's packed tensors per original weight."""
    total = 0
    for suffix in ("qweight", "qzeros", "scales", "g_idx"):
        t = tensors.get(f"{module}.{suffix}")
        if t is not None:
            total += t.numel() * t.element_size() * 8
    return total / n_weights


# ------------------------------------------------------------------------------------------------ in the env
def _quantize(model_dir: Path, out_dir: Path, settings: dict[str, Any], texts: list[str], max_seq_len: int,
              seed: int) -> dict[str, Any]:
    """Run inside the gptqmodel environment: quantize, keep the packed checkpoint, write the dense one."""
    # GPTQModel sizes its CPU worker pool as (cores + 1) // 2 but asks for 2 model-loader workers: on a 2-core
    # machine that fails ("Virtual pool 'model_loader:cpu' requests 2 workers but parent 'cpu' only has 1")
    os.environ.setdefault("GPTQMODEL_CPU_WORKERS", str(max(2, os.cpu_count() or 2)))
    import torch
    from gptqmodel import BACKEND, GPTAQConfig, GPTQModel, QuantizeConfig
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    t0 = time.perf_counter()
    gptaq = settings.get("gptaq", False)
    qcfg = QuantizeConfig(bits=int(settings["bits"]), group_size=int(settings.get("group_size", 128)),
                          damp_percent=float(settings.get("damp_percent", 0.05)),
                          act_group_aware=bool(settings.get("act_group_aware", True)),
                          gptaq=GPTAQConfig(alpha=float(gptaq.get("alpha", 0.25)) if isinstance(gptaq, dict) else 0.25,
                                            device="cpu") if gptaq else None,
                          offload_to_disk=False, **FIXED)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    calib = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False, truncation=True, max_length=max_seq_len)["input_ids"]
        if ids:
            calib.append({"input_ids": ids, "attention_mask": [1] * len(ids)})
    model = GPTQModel.load(str(model_dir), qcfg, device="cpu", dtype=torch.float32)
    model.quantize(calib, batch_size=1, tokenizer=tokenizer, backend=BACKEND.TORCH)
    packed_dir = out_dir / "gptq"
    model.save(str(packed_dir))
    for extra in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json"):
        (packed_dir / extra).unlink(missing_ok=True)  # the dense checkpoint has them
    packed = {}
    for f in sorted(packed_dir.glob("*.safetensors")):
        packed.update(load_file(str(f)))
    quant_config = json.loads((packed_dir / "quantize_config.json").read_text())
    quantize_seconds = time.perf_counter() - t0
    dense = AutoModelForCausalLM.from_pretrained(model_dir, dtype="auto")
    bits = int(settings["bits"])
    modules = sorted(k[: -len(".qweight")] for k in packed if k.endswith(".qweight"))
    per_module = {}
    with torch.no_grad():
        named = dict(dense.named_modules())
        for m in modules:
            w = dequantize(packed[f"{m}.qweight"], packed[f"{m}.qzeros"], packed[f"{m}.scales"],
                           packed[f"{m}.g_idx"], bits)
            lin = named[m]
            if tuple(w.shape) != tuple(lin.weight.shape):
                raise RuntimeError(f"{m}: dequantised shape {tuple(w.shape)} != {tuple(lin.weight.shape)}")
            lin.weight.copy_(w.to(lin.weight.dtype))
            per_module[m] = packed_bits(packed, m, lin.weight.numel())
    dense.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    n = {m: named[m].weight.numel() for m in per_module}
    import gptqmodel

    return {"quantized_modules": len(modules), "gptqmodel_version": gptqmodel.__version__,
            "gptqmodel_effective_bits": sum(per_module[m] * n[m] for m in n) / sum(n.values()),
            "gptq_quantize_config": quant_config, "quantize_seconds": quantize_seconds,
            "calibration_samples_used": len(calib)}


def gptqmodel_model(model_dir: str | os.PathLike, out_dir: str | os.PathLike, *, settings: dict[str, Any],
                    texts: list[str], max_seq_len: int, seed: int) -> dict[str, Any]:
    """Quantize with GPTQModel into ``out_dir`` (a fresh folder the caller replaces atomically): in this process
    when it has ``gptqmodel``, else in the gptqmodel environment. Returns facts for meta.json."""
    extra = [i for i in settings.get("ignore", []) if i != "lm_head"]
    if extra:
        raise ValueError(f"protected modules {extra}: the gptqmodel backend does not support protected variants "
                         "(use an llm-compressor recipe such as gptq_w4a16 for them)")
    unknown = set(settings) - {"bits", "ignore", *DEFAULTS}
    if unknown:
        raise ValueError(f"gptqmodel recipe: unknown settings {sorted(unknown)}; allowed: bits, {', '.join(DEFAULTS)}")
    out_dir, model_dir = Path(out_dir), Path(model_dir)
    try:
        import gptqmodel  # noqa: F401
    except ImportError:
        return _in_env(model_dir, out_dir, settings, texts, max_seq_len, seed)
    return _quantize(model_dir, out_dir, settings, texts, max_seq_len, seed)


def _in_env(model_dir: Path, out_dir: Path, settings: dict[str, Any], texts: list[str], max_seq_len: int,
            seed: int) -> dict[str, Any]:
    python = gptqmodel_python()
    if not Path(python).exists():
        raise RuntimeError(
            f"GPTQ/GPTAQ recipes run with GPTQModel in its own environment, and {python} does not exist: create it "
            "with `make env-gptqmodel` (scripts/setup-extra-env.sh gptqmodel), or point LRMREPRO_GPTQMODEL_PYTHON "
            "at a python that has gptqmodel 7.6 and lrmrepro")
    with tempfile.TemporaryDirectory() as tmp:
        request = Path(tmp) / "request.json"
        request.write_text(json.dumps({"model": str(model_dir), "out": str(out_dir), "settings": settings,
                                       "texts": texts, "max_seq_len": max_seq_len, "seed": seed}))
        result = Path(tmp) / "result.json"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC),
                                                            os.environ.get("PYTHONPATH", "")])}
        proc = subprocess.run([python, "-m", "lrmrepro.compress.gptaq", str(request), str(result)], env=env,
                              stdout=sys.stderr, stderr=sys.stderr)
        if proc.returncode != 0:
            raise RuntimeError(f"GPTQModel quantization failed in {python} (exit {proc.returncode}); see the log above")
        return json.loads(result.read_text())


def main(argv: list[str] | None = None) -> int:
    """``python -m lrmrepro.compress.gptaq REQUEST.json RESULT.json`` (inside the gptqmodel environment)."""
    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("request")
    p.add_argument("result")
    args = p.parse_args(argv)
    req = json.loads(Path(args.request).read_text())
    out = Path(req["out"])
    out.mkdir(parents=True, exist_ok=True)
    facts = _quantize(Path(req["model"]), out, req["settings"], req["texts"], int(req["max_seq_len"]),
                      int(req["seed"]))
    Path(args.result).write_text(json.dumps(facts, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
