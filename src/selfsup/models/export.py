"""Taking a trained encoder out of selfsup (``selfsup export RUN_DIR --format F``), in the form
the tool that uses it loads:

- ``safetensors``: the backbone's weights under the keys of the library it comes from (no
  ``backbone.`` prefix, no selfsup normalisation buffers), the encoder's spec as metadata;
- ``torchvision`` / ``timm``: a ``.pth`` state dict that ``load_state_dict(strict=True)`` takes
  into the named library's model once its classifier is removed (``fc = nn.Identity()``, or
  ``num_classes=0`` in timm); a stem that differs from the library's (CIFAR stem, grey images)
  is written in the note;
- ``torchscript`` / ``onnx``: the whole encoder, normalisation included: float images
  N×C×H×W in [0, 1] -> features N×D, with a dynamic batch axis; each is loaded back (ONNX with
  ``onnxruntime``) and its output compared with PyTorch's;
- ``torchscript`` / ``onnx`` of a text run (or text classifier) of selfsup's own transformer:
  token ids N×L -> features (or probabilities), any batch size and length up to the run's
  ``max_length`` (:class:`TokenIdsModel`); ONNX is checked with ``onnxruntime`` as for images;
- ``hf``: a text run, written with ``save_pretrained`` together with its tokenizer: the
  checkpoint a run started from (``--backbone hf:PATH``), or a ``causal_lm`` run of selfsup's own
  transformer as a GPT-2 (:func:`selfsup.models.hf_text.save_as_gpt2`); a task model over a
  checkpoint as the architecture's own sequence-classification checkpoint with ``id2label``
  (:func:`selfsup.models.hf_text.save_sequence_classifier`), loaded back and compared.

Beside each file, ``<out>.json`` says what the file holds and how to load it (the mean and std
the images must be standardised with, for the state-dict formats).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from selfsup.atomic import folder, write_bytes, write_file, write_path, write_text
from selfsup.errors import ConfigError, SelfsupError
from selfsup.jsonfile import to_json
from selfsup.models.classifier import is_model_dir, load_classifier
from selfsup.models.encoder import load_encoder, safetensors_bytes
from selfsup.models.text import TextEncoder

FORMATS = ("safetensors", "torchvision", "timm", "torchscript", "onnx", "hf")
SUFFIX = {
    "safetensors": ".safetensors",
    "torchvision": ".torchvision.pth",
    "timm": ".timm.pth",
    "torchscript": ".pt",
    "onnx": ".onnx",
}
TOLERANCE = 1e-4  # largest |difference| allowed between a reloaded export's features and PyTorch's
BUILTIN_RESNETS = ("resnet18", "resnet34", "resnet50")  # torchvision's models, whose keys timm shares


def export_encoder(run_dir: str | Path, fmt: str, out: str | Path | None = None) -> dict:
    """Write the encoder of ``run_dir`` in format ``fmt`` (:data:`FORMATS`) to ``out`` (default
    ``RUN_DIR/export/encoder.<suffix>``; a folder for ``hf``) and its note to ``<out>.json``.
    Returns the note: ``path``, ``format``, ``load`` (how to load it) and, for the formats loaded
    back here, ``max_abs_difference``. Raises :class:`SelfsupError` for an unknown format, one that
    does not fit the run's backbone (naming the formats that do), a missing extra, or an export
    whose reloaded output differs by more than :data:`TOLERANCE`."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format '{fmt}' (choose from {', '.join(FORMATS)})")
    run_dir = Path(run_dir)
    classifier = is_model_dir(run_dir)
    encoder = load_classifier(run_dir) if classifier else load_encoder(run_dir)
    text = encoder.spec.get("modality") == "text"
    if text:  # TorchScript and ONNX where selfsup's own transformer is inside; hf where a checkpoint is
        inner = getattr(encoder, "encoder", encoder)
        own = isinstance(inner, TextEncoder)
        fits = ("safetensors",) if classifier and own else ("hf", "safetensors")
        fits += ("torchscript", "onnx") if own else ()
    else:
        fits = tuple(f for f in FORMATS if f != "hf")
    if fmt not in fits:
        kind = ("a text " if text else "an image ") + ("classifier" if classifier else "run")
        raise ConfigError(f"--format {fmt} does not fit {kind}; use one of {', '.join(fits)}")
    name = "classifier" if classifier else "encoder"
    default = run_dir / "export" / ("hf" if fmt == "hf" else f"{name}{SUFFIX[fmt]}")
    path = Path(out) if out is not None else default
    path.parent.mkdir(parents=True, exist_ok=True)
    note = WRITERS[fmt](encoder, path)
    note = {"path": str(path), "format": fmt, **note}
    write_text(path.parent / f"{path.name}.json", to_json(note, indent=2))
    return note


def _image_facts(encoder, any_size: bool = False) -> dict:
    """What the note says of an image encoder's (or classifier's) input: the run's image shape
    (``any_size``: the export takes other heights and widths too), the standardisation, the
    output (features, or class probabilities and the classes' names)."""
    spec = encoder.spec
    height, width = spec["input_size"]
    sizes = "; any height and width (dynamic axes)" if any_size else " (fixed)"
    facts = {
        "input": f"float images N×{spec['in_channels']}×{height}×{width} in [0, 1], the run's images{sizes}",
        "input_shape": [spec["in_channels"], height, width],
        "any_size": any_size,
        "mean": spec["mean"],
        "std": spec["std"],
        "out_dim": encoder.out_dim,
    }
    if hasattr(encoder, "classes"):
        facts["classes"] = encoder.classes
    return facts


def _library_net(encoder) -> nn.Module:
    """The library model inside the backbone: timm:/torchvision: models sit in a feature wrapper."""
    return getattr(encoder.backbone, "net", encoder.backbone)


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def _write_safetensors(encoder, path: Path) -> dict:
    metadata = {"selfsup_spec": to_json(encoder.spec)}
    if hasattr(encoder, "classes"):  # a classifier: its encoder (normalisation included) and head
        weights = _state(encoder)
        metadata["classes"] = to_json(encoder.classes)
        facts = {"classes": encoder.classes, "output": "head.linear: logits of the standardised features"}
        load = "safetensors.torch.load_file(path): encoder.* (selfsup's encoder) and head.* (LinearHead)"
    else:
        weights = _state(encoder) if encoder.spec.get("modality") == "text" else _state(_library_net(encoder))
        facts = {}
        load = (
            "safetensors.torch.load_file(path); the keys are the backbone's own "
            "(the library's, for timm:, torchvision: and the ResNets)"
        )
    if encoder.spec.get("modality") == "text":
        facts["input"] = "token ids N×L of the run's tokenizer (tokenizer.json in the run)"
    else:
        facts = {**_image_facts(encoder), **facts}
    write_bytes(path, safetensors_bytes(weights, metadata))
    return {**facts, "load": load}


def _target_model(encoder, library: str) -> str:
    """The name of the ``library`` model whose keys the run's backbone has."""
    name = encoder.spec["backbone"]
    own, _, model = name.partition(":")
    if own == library:
        return model
    if name in BUILTIN_RESNETS:
        return name
    fits = f"{name.split(':')[0]}" if ":" in name else "safetensors, torchscript, onnx"
    raise ConfigError(
        f"a run of backbone '{name}' cannot be exported as {library} weights; use --format {fits}"
    )


def _stem_note(net: nn.Module, in_channels: int) -> str | None:
    conv = getattr(net, "conv1", None)
    if isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3):
        return (
            "CIFAR stem: before loading, set model.conv1 = nn.Conv2d("
            f"{conv.in_channels}, {conv.out_channels}, 3, 1, 1, bias=False) and model.maxpool = nn.Identity()"
        )
    if isinstance(conv, nn.Conv2d) and conv.in_channels != 3:
        return f"first convolution takes {conv.in_channels} channels: build the model for {conv.in_channels}"
    return None


def _write_library(library: str):
    def write(encoder, path: Path) -> dict:
        model = _target_model(encoder, library)
        net = _library_net(encoder)
        state = _state(net)
        classes = len(encoder.classes) if hasattr(encoder, "classes") else 0
        if classes:  # the head, its standardisation folded in, as the library's classifier layer
            folded = encoder.head.folded()
            layer = _classifier_layer(library, model, classes)
            state |= {f"{layer}.weight": folded.weight.detach(), f"{layer}.bias": folded.bias.detach()}
        write_file(path, lambda handle: torch.save(state, handle))
        if library == "torchvision":
            build = f"torchvision.models.get_model('{model}', weights=None" + (
                f", num_classes={classes})"
                if classes
                else "); then model.fc (or the last Linear of model.classifier) = nn.Identity()"
            )
        else:
            build = f"timm.create_model('{model}', num_classes={classes}, in_chans={net_in_channels(net)})"
        return {
            **_image_facts(encoder),
            **_output_note(encoder, "logits"),
            "library": library,
            "model": model,
            "stem": _stem_note(net, encoder.spec["in_channels"]) or "the library's own",
            "load": f"model = {build}; model.load_state_dict(torch.load(path), strict=True)",
        }

    return write


def _output_note(encoder, kind: str) -> dict:
    """What a classifier's export outputs (``probabilities``: the softmax; ``logits``: the
    library's classifier layer); nothing for an encoder."""
    if not hasattr(encoder, "classes"):
        return {}
    k = len(encoder.classes)
    if kind == "probabilities":
        return {"output": f"class probabilities N×{k} (softmax), in the order of 'classes'"}
    return {
        "output": f"logits N×{k} of the library's classifier layer, in the order of 'classes' (softmax them)"
    }


def _classifier_layer(library: str, model: str, classes: int) -> str:
    """The name of the classifier layer of the ``library`` model ``model`` built for ``classes``."""
    if library == "timm":
        import timm

        return timm.create_model(model, pretrained=False, num_classes=classes).default_cfg["classifier"]
    from torchvision import models

    net = models.get_model(model, weights=None, num_classes=classes)
    return [n for n, m in net.named_modules() if isinstance(m, nn.Linear)][-1]


def net_in_channels(net: nn.Module) -> int:
    """The channels the first convolution of ``net`` takes (3 where it has none)."""
    conv = next((m for m in net.modules() if isinstance(m, nn.Conv2d)), None)
    return conv.in_channels if conv is not None else 3


def _example(encoder, batch: int = 2, grow: int = 0) -> torch.Tensor:
    """Random images of the run's shape (``grow``: that many pixels taller and wider)."""
    spec = encoder.spec
    height, width = spec["input_size"]
    generator = torch.Generator().manual_seed(batch + grow)
    return torch.rand(batch, spec["in_channels"], height + grow, width + grow, generator=generator)


OTHER_SIZE = 8
"""How many pixels taller and wider than the run's images the other size an export is checked on is."""


def _takes_any_size(encoder) -> bool:
    """Whether the PyTorch encoder itself takes images of another size than the run's (a
    convolutional network does; a ViT's fixed positions do not)."""
    try:
        with torch.no_grad():
            return encoder(_example(encoder, 1, OTHER_SIZE)).shape == (1, encoder.out_dim)
    except Exception:  # noqa: BLE001 - any failure means: not this size
        return False


def _check_sizes(encoder, run: Callable[[torch.Tensor], torch.Tensor], what: str, any_size: bool) -> float:
    """The largest difference between ``run`` (the reloaded export) and PyTorch on 5 images of the
    run's shape (another batch size than exported) and, where ``any_size``, on 3 images of another
    size. Raises :class:`SelfsupError` above :data:`TOLERANCE`."""
    checks = [_example(encoder, 5)] + ([_example(encoder, 3, OTHER_SIZE)] if any_size else [])
    differences = []
    with torch.no_grad():
        for images in checks:
            try:
                reloaded = run(images)
            except Exception as exc:  # noqa: BLE001 - each runtime raises its own types
                shape = "×".join(str(n) for n in images.shape)
                why = str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else type(exc).__name__
                raise SelfsupError(f"the {what} export cannot take {shape} images ({why})") from None
            differences.append(_checked(encoder(images), reloaded, what))
    return max(differences)


def _checked(reference: torch.Tensor, reloaded: torch.Tensor, what: str) -> float:
    difference = float((reference - torch.as_tensor(reloaded)).abs().max())
    if difference > TOLERANCE:
        raise SelfsupError(
            f"the {what} export gives features {difference:.2e} away from PyTorch's (> {TOLERANCE})"
        )
    return difference


class TokenIdsModel(nn.Module):
    """A text encoder (or a classifier over one) as a trace takes it: token ids N×L int64 (L at most
    the encoder's ``max_length``, padding id 0) -> features N×D (or class probabilities N×K).
    The encoder's own ``forward`` first trims the batch's shared padding, a length a trace would
    keep as a constant; padding is masked anyway, so the outputs are the same."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.encoder = getattr(model, "encoder", model)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        features = self.encoder.pool(self.encoder.backbone(ids), ids)
        if hasattr(self.model, "head"):
            return torch.softmax(self.model.head(features), dim=1)
        return features


def _token_ids(encoder, batch: int, length: int, padded: int = 0, seed: int = 0) -> torch.Tensor:
    """Random token ids ``batch``×``length`` of the run's vocabulary, the last ``padded`` positions
    of every other row padding."""
    inner = getattr(encoder, "encoder", encoder)
    vocabulary = inner.spec.get("vocab_size") or inner.tokenizer.get_vocab_size()
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocabulary, (batch, length), generator=generator)
    if padded:
        ids[::2, length - padded :] = 0
    return ids


def _text_checks(encoder, longest: int) -> list[torch.Tensor]:
    """Token ids an export of a text model is checked on: other batch sizes and lengths, padded
    rows, and padding every row shares (which the encoder's own forward trims)."""
    shared = _token_ids(encoder, 2, longest, 0, 3)
    shared[:, longest // 2 :] = 0
    return [_token_ids(encoder, 5, longest, 3, 1), _token_ids(encoder, 3, max(2, longest // 2), 0, 2), shared]


def _text_input_note(longest: int) -> dict:
    return {
        "input": f"token ids N×L int64 of the run's tokenizer (tokenizer.json): [CLS] … [SEP], "
        f"padded with 0, L at most {longest}; any batch size and length",
        "max_length": longest,
    }


def _write_torchscript_text(encoder, path: Path) -> dict:
    longest = getattr(encoder, "encoder", encoder).max_length
    wrapped = TokenIdsModel(encoder).eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # checked on other shapes below
        traced = torch.jit.trace(wrapped, _token_ids(encoder, 2, longest, padded=longest // 2))
        extra = {"classes.json": to_json(encoder.classes)} if hasattr(encoder, "classes") else {}
        write_file(path, lambda handle: torch.jit.save(traced, handle, _extra_files=extra))
        loaded = torch.jit.load(str(path))
        difference = max(
            _checked(encoder(ids), loaded(ids), "TorchScript") for ids in _text_checks(encoder, longest)
        )
    return {
        **_text_input_note(longest),
        **_output_note(encoder, "probabilities"),
        "max_abs_difference": difference,
        "load": "torch.jit.load(path)(ids)",
    }


def _write_torchscript(encoder, path: Path) -> dict:
    if encoder.spec.get("modality") == "text":
        return _write_torchscript_text(encoder, path)
    with torch.no_grad(), warnings.catch_warnings():
        # deprecated since torch 2.10 for torch.export, yet what C++ and mobile runtimes still load
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # checked on other inputs below
        traced = torch.jit.trace(encoder, _example(encoder))
        extra = {"classes.json": to_json(encoder.classes)} if hasattr(encoder, "classes") else {}
        write_file(path, lambda handle: torch.jit.save(traced, handle, _extra_files=extra))
        loaded = torch.jit.load(str(path))
    difference = _check_sizes(encoder, loaded, "TorchScript", False)
    any_size = _takes_any_size(encoder)
    if any_size:  # a trace may have kept the traced size as a constant: other sizes must match too
        try:
            difference = max(difference, _check_sizes(encoder, loaded, "TorchScript", True))
        except Exception:  # noqa: BLE001 - a size the trace cannot take, or takes wrongly
            any_size = False
    return {
        **_image_facts(encoder, any_size),
        **_output_note(encoder, "probabilities"),
        "max_abs_difference": difference,
        "load": "torch.jit.load(path)(images)",
    }


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError("--format onnx needs onnx and onnxruntime: pip install 'selfsup[onnx]'") from None
    return onnxruntime


def _write_onnx(encoder, path: Path) -> dict:
    if encoder.spec.get("modality") == "text":
        return _write_onnx_text(encoder, path)
    onnxruntime = _onnxruntime()
    any_size = _takes_any_size(encoder)
    axes = {0: torch.export.Dim("batch", min=1)}
    try:
        sizes = {2: torch.export.Dim("height", min=1), 3: torch.export.Dim("width", min=1)}
        _onnx_export(encoder, _example(encoder), "images", axes | (sizes if any_size else {}), path)
    except ConfigError:  # a missing extra: no size would help
        raise
    except Exception:  # noqa: BLE001 - a model torch.export cannot take at any size: the run's size
        if not any_size:
            raise
        any_size = False
        _onnx_export(encoder, _example(encoder), "images", axes, path)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(images: torch.Tensor):
        return session.run(None, {"images": images.numpy()})[0]

    return {
        **_image_facts(encoder, any_size),
        **_output_note(encoder, "probabilities"),
        "max_abs_difference": _check_sizes(encoder, run, "ONNX", any_size),
        "load": "onnxruntime.InferenceSession(path).run(None, {'images': images})[0]",
    }


def _write_onnx_text(encoder, path: Path) -> dict:
    onnxruntime = _onnxruntime()
    longest = getattr(encoder, "encoder", encoder).max_length
    wrapped = TokenIdsModel(encoder).eval()
    axes = {0: torch.export.Dim("batch", min=1), 1: torch.export.Dim("length", min=1, max=longest)}
    _onnx_export(wrapped, _token_ids(encoder, 2, longest, padded=longest // 2), "ids", axes, path)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        difference = max(
            _checked(encoder(ids), session.run(None, {"ids": ids.numpy()})[0], "ONNX")
            for ids in _text_checks(encoder, longest)
        )
    return {
        **_text_input_note(longest),
        **_output_note(encoder, "probabilities"),
        "max_abs_difference": difference,
        "load": "onnxruntime.InferenceSession(path).run(None, {'ids': ids})[0]",
    }


def _onnx_export(module: nn.Module, example: torch.Tensor, name: str, axes: dict, path: Path) -> None:
    """``module`` as ONNX (``torch.export``), input ``name`` with the dynamic ``axes``; a
    classifier's class names in the model's metadata, where runtimes read them. Raises
    :class:`ConfigError` naming the package of the ``onnx`` extra that is missing."""
    classes = getattr(getattr(module, "model", module), "classes", None)

    def write(tmp: Path) -> None:
        with contextlib.redirect_stdout(io.StringIO()):  # its progress lines, one per pass
            torch.onnx.export(
                module,
                (example,),
                str(tmp),
                input_names=[name],
                output_names=["features" if classes is None else "probabilities"],
                dynamic_shapes=(axes,),
                dynamo=True,
                verbose=False,
                external_data=False,
            )
        if classes is not None:
            import onnx

            model = onnx.load(str(tmp))
            onnx.helper.set_model_props(model, {"classes": to_json(classes)})
            onnx.save(model, str(tmp))

    try:
        write_path(path, write, suffix=".onnx")
    except ImportError as exc:
        raise ConfigError(f"--format onnx needs {exc.name}: pip install 'selfsup[onnx]'") from None


def _write_hf(encoder, path: Path) -> dict:
    from selfsup.models.hf_text import save_as_gpt2

    if hasattr(encoder, "classes"):
        return _write_hf_classifier(encoder, path)
    with folder(path) as tmp:
        if hasattr(encoder, "save_pretrained"):  # started from a Hugging Face checkpoint
            encoder.save_pretrained(tmp)
        else:
            save_as_gpt2(encoder, tmp)
    return {
        "load": "transformers.AutoModel.from_pretrained(path); AutoTokenizer.from_pretrained(path)",
        "embedding": "the mean of the final hidden states over the attended tokens",
    }


def _write_hf_classifier(model, path: Path) -> dict:
    """A task model over a Hugging Face checkpoint as that architecture's sequence-classification
    checkpoint, loaded back with ``transformers`` and its probabilities compared with selfsup's."""
    from selfsup.models.hf_text import _transformers, save_sequence_classifier

    encoder = model.encoder
    if encoder.spec.get("pooling") != "classifier":
        raise ConfigError(
            "--format hf: this model was fitted on mean-pooled features, which no transformers head "
            "takes; fit it again with this version of selfsup (its head is then the architecture's own)"
        )
    with folder(path) as tmp:
        save_sequence_classifier(encoder, model.head.folded(), model.classes, tmp)
        loaded = _transformers().AutoModelForSequenceClassification.from_pretrained(tmp).eval()
        with torch.no_grad():
            difference = 0.0
            for ids in _text_checks(model, encoder.max_length):
                hf_ids = encoder.backbone.to_hf[ids]
                logits = loaded(input_ids=hf_ids, attention_mask=(ids != 0).long()).logits
                difference = max(difference, _checked(model(ids), torch.softmax(logits, 1), "hf"))
    return {
        "load": "transformers.AutoModelForSequenceClassification.from_pretrained(path); "
        "AutoTokenizer.from_pretrained(path)",
        "classes": model.classes,
        "output": "logits N×K; softmax gives the class probabilities; config.id2label names them",
        "max_abs_difference": difference,
    }


WRITERS = {
    "safetensors": _write_safetensors,
    "torchvision": _write_library("torchvision"),
    "timm": _write_library("timm"),
    "torchscript": _write_torchscript,
    "onnx": _write_onnx,
    "hf": _write_hf,
}
