"""lrmrepro: reproduce how compression and numerical precision change the reasoning of large reasoning models.

All workflow logic lives in this package; ``workflow_scripts/`` are thin adapters from the Snakemake
``snakemake`` object to functions here.
"""

__version__ = "0.1.0"
