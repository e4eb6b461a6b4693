"""Choosing what to label, and reading the labels back: strategies over an encoder's features
(:mod:`selfsup.labelling.strategies`) and labels files (:mod:`selfsup.labelling.labels`)."""
