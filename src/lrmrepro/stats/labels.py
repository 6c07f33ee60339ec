"""The run labels as table columns (:class:`lrmrepro.runs.Run`): every summary and statistics table names its runs
with them.

A nondeterminism *group* is a run's labels without its runtime configuration (``GROUP_KEYS``: model, compression,
task, precision, decoding); the *configurations* compared within a group are its runtime labels (``CONFIG_KEYS``:
backend, parallel, batch_size, hardware).
"""

from __future__ import annotations

import polars as pl

from ..runs import Run

LABELS = list(Run.LABELS)
CONFIG_KEYS = list(Run.RUNTIME_LABELS)
GROUP_KEYS = [k for k in LABELS if k not in CONFIG_KEYS]
#: column types of the labels
LABEL_SCHEMA = {k: pl.Int64 if k in Run.INTEGER_LABELS else pl.String for k in LABELS}
CONFIG_SCHEMA = {k: LABEL_SCHEMA[k] for k in CONFIG_KEYS}
GROUP_SCHEMA = {k: LABEL_SCHEMA[k] for k in GROUP_KEYS}
