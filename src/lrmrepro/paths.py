"""Where the checkout's own files are: the one home of the repository root (the package runs from its checkout,
``src/lrmrepro``; the workflow puts ``src`` on the path of every job)."""

from __future__ import annotations

from pathlib import Path

#: src/lrmrepro
PACKAGE = Path(__file__).resolve().parent
#: src, what a subprocess in another environment puts on its PYTHONPATH
SRC = PACKAGE.parent
#: the checkout
ROOT = SRC.parent
#: compression recipes, recipes/<name>.yaml
RECIPES = ROOT / "recipes"
#: the configuration schema
SCHEMA = ROOT / "schemas" / "config.schema.yaml"
#: the shipped default model
EMBEDDED = ROOT / "embedded" / "default"
#: the default run's tables per numerics identity
EXPECTED_RESULTS = ROOT / "docs" / "results"
