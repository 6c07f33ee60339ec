"""Compression stage: llm-compressor recipes (``recipes/*.yaml``), protected variants, checkpoint facts.

Modules: ``recipes`` (recipes as data, templating), ``run`` (``compress_model``), ``inspect`` (checkpoint facts),
``protect`` / ``selection`` (protected variants), ``calibration``. Import what you need from them: this package's
``__init__`` imports nothing, so that reading recipes (e.g. while the DAG is built) does not load torch.
"""
