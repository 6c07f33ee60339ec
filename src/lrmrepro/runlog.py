"""Per-rule logging for workflow scripts: everything (logging, warnings, progress bars) goes to the rule's log."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def rule_log(snakemake: Any) -> Iterator[logging.Logger]:
    """Redirect stdout/stderr of a ``script:`` rule into ``snakemake.log[0]`` and configure logging."""
    log_path = Path(snakemake.log[0]) if len(snakemake.log) else None
    stream = open(log_path, "w", buffering=1) if log_path else sys.stderr
    if log_path:
        log_path.parent.mkdir(parents=True, exist_ok=True)
    old_out, old_err = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = stream
    logging.basicConfig(level=logging.INFO, stream=stream, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(True)
    logger = logging.getLogger(f"lrmrepro.rule.{snakemake.rule}")
    logger.info("rule %s wildcards=%s", snakemake.rule, dict(snakemake.wildcards))
    from . import io

    io.set_producer(snakemake.rule)  # named in the record of every table this job writes
    # the job stops (with its child processes) when the Snakemake process that started it is killed
    from .jobguard import guard_job

    if guard_job() is not None:
        logger.info("stops if its Snakemake process ends")
    t0 = time.perf_counter()
    try:
        yield logger
        logger.info("done in %.1f s", time.perf_counter() - t0)
    except BaseException:
        logger.exception("rule %s failed", snakemake.rule)
        raise
    finally:
        sys.stdout, sys.stderr = old_out, old_err
        if log_path:
            stream.close()
