"""Few-label evaluation: kNN, linear probe, fine-tuning, from-scratch and raw-pixel baselines."""

from selfsup.evaluate.harness import PROTOCOLS, evaluate_encoder, format_table

__all__ = ["PROTOCOLS", "evaluate_encoder", "format_table"]
