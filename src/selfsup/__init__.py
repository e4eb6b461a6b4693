"""selfsup: self-supervised pretraining and few-label evaluation."""

from selfsup.errors import SelfsupError

__version__ = "0.1.0"


def load_encoder(run_dir):
    """Rebuild the trained encoder of a run directory (see :func:`selfsup.models.encoder.load_encoder`)."""
    from selfsup.models.encoder import load_encoder as _load

    return _load(run_dir)


def load_classifier(model_dir, device="cpu"):
    """The task model of a ``selfsup fit`` model directory: images in [0, 1] (or token ids) ->
    class probabilities (see :func:`selfsup.models.classifier.load_classifier`)."""
    from selfsup.models.classifier import load_classifier as _load

    return _load(model_dir, device)


__all__ = ["SelfsupError", "load_classifier", "load_encoder", "__version__"]
