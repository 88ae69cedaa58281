"""hpstudy: hyperparameter studies with seed-aware statistics."""

__version__ = "0.1.0"
