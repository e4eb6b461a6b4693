"""selfsup: self-supervised pretraining and few-label evaluation."""

from selfsup.errors import SelfsupError

__version__ = "0.1.0"


def load_encoder(run_dir):
    """Rebuild the trained encoder of a run directory (see :func:`selfsup.models.encoder.load_encoder`)."""
    from selfsup.models.encoder import load_encoder as _load

    return _load(run_dir)


__all__ = ["SelfsupError", "load_encoder", "__version__"]
