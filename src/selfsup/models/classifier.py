"""The task model users keep: an encoder and a linear head over its classes, saved in a model
directory that ``selfsup predict`` and ``selfsup export`` read and :func:`load_classifier` loads.

A model directory holds the encoder as a run directory does (``encoder.safetensors`` and
``encoder.json``, with ``tokenizer.json`` for selfsup's text encoders, or the ``hf/`` folder of a
Hugging Face checkpoint), the head (``head.safetensors``), ``classes.json`` (the class names, in
the head's order) and ``classifier.json`` (how it was fitted: protocol, semi-supervised stage,
labels, validation accuracy, the settings used).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from selfsup import atomic
from selfsup.errors import SelfsupError
from selfsup.jsonfile import to_json
from selfsup.models.encoder import ENCODER_META, load_encoder, safetensors_bytes, save_encoder

HEAD_FILE, CLASSES_FILE, CLASSIFIER_FILE = "head.safetensors", "classes.json", "classifier.json"


class LinearHead(nn.Module):
    """Logits N×K of features N×D: a linear layer on the features standardised by the labelled
    features' mean and std (what the linear probe fits on), or by 0 and 1 (a fine-tuned head)."""

    def __init__(self, dim: int, classes: int):
        super().__init__()
        self.linear = nn.Linear(dim, classes)
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear((features.float() - self.mean) / self.std)

    @classmethod
    def fitted(cls, weight: torch.Tensor, bias: torch.Tensor, mean=None, std=None) -> LinearHead:
        """A head of a fitted logistic regression: ``weight`` D×K (as :func:`fit_logistic` returns
        it), ``bias`` K, the standardisation ``mean`` and ``std`` (D) it was fitted after."""
        head = cls(weight.shape[0], weight.shape[1])
        with torch.no_grad():
            head.linear.weight.copy_(weight.T)
            head.linear.bias.copy_(bias)
            if mean is not None:
                head.mean.copy_(mean)
                head.std.copy_(std)
        return head

    def folded(self) -> nn.Linear:
        """The same map as one plain ``nn.Linear`` (the standardisation folded into its weights):
        what a library's classifier layer takes."""
        linear = nn.Linear(self.linear.in_features, self.linear.out_features)
        with torch.no_grad():
            linear.weight.copy_(self.linear.weight / self.std)
            linear.bias.copy_(self.linear.bias - (self.linear.weight * (self.mean / self.std)).sum(dim=1))
        return linear


class TaskModel(nn.Module):
    """The classifier: ``encoder`` (images N×C×H×W in [0, 1], or token ids N×L) then ``head``;
    ``forward`` gives class probabilities N×K (softmax), :meth:`logits` the logits. ``classes``
    names the K classes."""

    def __init__(self, encoder: nn.Module, head: LinearHead, classes: list[str]):
        super().__init__()
        self.encoder, self.head, self.classes = encoder, head, list(classes)

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(inputs))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return F.softmax(self.logits(inputs), dim=1)

    @property
    def tokenizer(self):
        """The text encoder's tokenizer (``encode_batch``): what makes token ids of texts."""
        return getattr(self.encoder, "tokenizer", None)

    def inputs(self, dataset):
        """What this model takes of a data set (its encoder's inputs)."""
        return self.encoder.inputs(dataset)

    @property
    def spec(self) -> dict:
        """The encoder's spec (what the exports read: input shape, standardisation)."""
        return self.encoder.spec

    @property
    def out_dim(self) -> int:
        """The number of classes: the length of each output row."""
        return len(self.classes)

    @property
    def backbone(self) -> nn.Module:
        return self.encoder.backbone


def save_classifier(model: TaskModel, folder: str | Path, facts: dict) -> None:
    """Write ``model`` to ``folder`` (see the module's docstring) with ``facts`` in
    ``classifier.json``; every file atomically (:class:`~selfsup.atomic.WriteError`)."""
    from selfsup.data.tokenizer import save_tokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    encoder = model.encoder
    save_encoder(encoder, folder)
    if getattr(encoder, "spec", {}).get("modality") == "text" and not hasattr(encoder, "save_pretrained"):
        save_tokenizer(encoder.tokenizer, folder)
    state = {k: v.detach().cpu().contiguous() for k, v in model.head.state_dict().items()}
    atomic.write_bytes(folder / HEAD_FILE, safetensors_bytes(state))
    atomic.write_text(folder / CLASSES_FILE, json.dumps(model.classes, indent=1))
    atomic.write_text(folder / CLASSIFIER_FILE, to_json({"classes": model.classes, **facts}, indent=2))


def is_model_dir(folder: str | Path) -> bool:
    """Whether ``folder`` holds a task model (not only a run's encoder)."""
    return (Path(folder) / CLASSIFIER_FILE).exists() and (Path(folder) / HEAD_FILE).exists()


def load_classifier(folder: str | Path, device: str | torch.device = "cpu") -> TaskModel:
    """The task model of ``selfsup fit``'s ``folder``, in eval mode: images N×C×H×W in [0, 1] (or
    token ids N×L; ``model.tokenizer`` makes them of texts) -> class probabilities N×K, the
    classes named by ``model.classes``. Raises :class:`SelfsupError` where ``folder`` holds no
    task model."""
    folder = Path(folder)
    if not is_model_dir(folder):
        hint = (
            " (a run directory: `selfsup fit` makes a model of it)"
            if (folder / ENCODER_META).exists()
            else ""
        )
        raise SelfsupError(f"{folder} is not a model directory of `selfsup fit`{hint}")
    classes = json.loads((folder / CLASSES_FILE).read_text())
    state = load_file(str(folder / HEAD_FILE))
    head = LinearHead(state["linear.weight"].shape[1], len(classes))
    head.load_state_dict(state)
    return TaskModel(load_encoder(folder, device), head.to(device), classes).to(device).eval()


def read_facts(folder: str | Path) -> dict:
    """``classifier.json`` of a model directory."""
    return json.loads((Path(folder) / CLASSIFIER_FILE).read_text())
