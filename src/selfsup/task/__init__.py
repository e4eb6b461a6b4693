"""The task model: a classifier from a few labels and the unlabelled rest (``selfsup fit``),
saved in a model directory (:mod:`selfsup.models.classifier`) that ``predict`` and ``export`` read."""
