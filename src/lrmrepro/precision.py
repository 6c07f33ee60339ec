"""The numerical precisions of the study: ``bf16``, ``fp16``, ``fp32`` and ``layercast`` (BF16 weights, FP32 compute;
:mod:`lrmrepro.layercast`, :mod:`lrmrepro.vllm_layercast`).

The one list of precisions: the configuration schema's enum (checked equal by a test), the workflow's wildcard
constraint, both backends and the figures' order take it from here. No third-party imports: the workflow imports
it while it builds the DAG.
"""

from __future__ import annotations

#: the dtype a model is loaded in, by precision, named as both torch (``torch.<name>``) and vLLM (``dtype=``) name it;
#: ``layercast`` loads in fp32 and then stores its decoder linear weights in bf16
LOAD_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32", "layercast": "float32"}
PRECISIONS = tuple(LOAD_DTYPES)


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of the allowed values {', '.join(PRECISIONS)}")
    return precision


def load_dtype(precision: str) -> str:
    """The name of the dtype ``precision`` loads the model in (``LOAD_DTYPES``); ValueError for an unknown one."""
    return LOAD_DTYPES[check_precision(precision)]
