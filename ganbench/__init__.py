"""ganbench: a benchmark for GANs with Lipschitz discriminators (SN, GN, PGN, GraN, GP, CR)."""

__version__ = "0.1.0"

# Bumped when the run-directory contract (file names, Parquet columns, run.json keys) changes incompatibly.
SCHEMA_VERSION = 1
