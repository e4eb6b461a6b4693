"""Hugging Face ``transformers`` checkpoints as selfsup's text encoders: ``--backbone hf:PATH``
continues the pretraining of a local checkpoint folder (encoder models such as BERT, RoBERTa and
DistilBERT with ``mlm``, decoder models such as GPT-2 with ``causal_lm``) with the checkpoint's
own tokenizer and output layer; nothing is downloaded (the ``hf`` extra).

selfsup's text code counts on five special ids: ``[PAD]`` 0, ``[UNK]`` 1, ``[CLS]`` 2, ``[SEP]``
3, ``[MASK]`` 4, the other tokens after them. :class:`HFTokenizer` gives the checkpoint's tokens
those ids (its ``[CLS]``/``<s>`` becomes 2, and so on; a role the checkpoint lacks, such as
GPT-2's padding, stands for its end-of-text token), and :class:`HFTextEncoder` maps the ids back
before the model sees them and puts the logits back in selfsup's order. So masking, padding,
token stores, batching and the evaluation run unchanged, and the model stays the checkpoint's:
a run's ``hf/`` folder is written with ``save_pretrained`` and loads in ``transformers``.
"""

from __future__ import annotations

import copy
import types
from pathlib import Path

import torch
from torch import nn

from selfsup.data.tokenizer import trim_padding
from selfsup.errors import ConfigError
from selfsup.models.text import BaseTextEncoder

PREFIX = "hf:"
HF_FOLDER = "hf"  # in a run directory: the checkpoint as trained, with its tokenizer


def is_hf_backbone(name: str) -> bool:
    return name.startswith(PREFIX) and len(name) > len(PREFIX)


def _transformers():
    try:
        import transformers
    except ImportError:
        raise ConfigError("--backbone hf:PATH needs transformers: pip install 'selfsup[hf]'") from None
    transformers.logging.set_verbosity_error()  # e.g. "weights not used" when AutoModel drops the head
    transformers.logging.disable_progress_bar()  # a bar per load and save; selfsup shows its own
    return transformers


class HFTokenizer:
    """A Hugging Face fast tokenizer with selfsup's ids (see the module's docstring); it offers the
    calls selfsup makes of a ``tokenizers.Tokenizer``. ``to_hf``: selfsup id -> checkpoint id."""

    def __init__(self, hf):
        backend = getattr(hf, "backend_tokenizer", None)
        if backend is None:
            raise ConfigError("hf: checkpoints need a fast tokenizer (tokenizer.json)")
        self.hf, self.backend = hf, backend
        end = hf.eos_token_id if hf.eos_token_id is not None else hf.sep_token_id
        roles = [
            hf.pad_token_id,
            hf.unk_token_id,
            hf.cls_token_id if hf.cls_token_id is not None else hf.bos_token_id,
            hf.sep_token_id if hf.sep_token_id is not None else end,
            hf.mask_token_id,
        ]
        stand_in = next((r for r in (end, *roles) if r is not None), 0)
        taken = {r for r in roles if r is not None}
        regular = [i for i in range(len(hf)) if i not in taken]
        self.to_hf = torch.tensor([r if r is not None else stand_in for r in roles] + regular)
        self.from_hf = torch.full((len(hf),), 1, dtype=torch.long)  # 1: [UNK]
        self.from_hf[regular] = torch.arange(len(roles), len(roles) + len(regular))
        for ours, theirs in reversed(list(enumerate(roles))):  # a shared id takes the first role
            if theirs is not None:
                self.from_hf[theirs] = ours
        self.kind = "wordpiece" if type(backend.model).__name__ == "WordPiece" else "bpe"
        self.encode_special_tokens = True

    def get_vocab_size(self) -> int:
        return len(self.to_hf)

    def get_vocab(self) -> dict[str, int]:
        return {
            token: int(self.from_hf[i]) for token, i in self.hf.get_vocab().items() if i < len(self.from_hf)
        }

    def encode_batch(self, texts, add_special_tokens: bool = False):
        self.backend.encode_special_tokens = self.encode_special_tokens
        out = self.backend.encode_batch(list(texts), add_special_tokens=add_special_tokens)
        return [types.SimpleNamespace(ids=self.from_hf[e.ids].tolist() if e.ids else []) for e in out]

    def decode(self, ids) -> str:
        return self.backend.decode(self.to_hf[torch.as_tensor(ids, dtype=torch.long)].tolist())

    def to_str(self) -> str:
        return "selfsup-hf-ids|" + self.backend.to_str()


class _Head(nn.Module):
    """The checkpoint's output layer, its logits put in selfsup's token order."""

    def __init__(self, layer: nn.Module, to_hf: torch.Tensor):
        super().__init__()
        self.layer = layer
        self.register_buffer("to_hf", to_hf, persistent=False)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.layer(states)[..., self.to_hf]


class _States(nn.Module):
    """The checkpoint's base model: selfsup ids N×L (0: padding) -> final states N×L×dim."""

    def __init__(self, model: nn.Module, to_hf: torch.Tensor):
        super().__init__()
        self.model = model
        self.register_buffer("to_hf", to_hf, persistent=False)

    def forward(self, ids: torch.Tensor, segments: torch.Tensor | None = None) -> torch.Tensor:
        extra = {} if segments is None else {"token_type_ids": segments}
        out = self.model.base_model(input_ids=self.to_hf[ids], attention_mask=(ids != 0).long(), **extra)
        return out.last_hidden_state


class HFTextEncoder(BaseTextEncoder):
    """A ``transformers`` masked or causal LM (with its output layer, so that continued pretraining
    starts from the checkpoint's) as a selfsup text encoder: ids N×L -> mean-pooled final states
    N×hidden_size. Build it with :meth:`from_checkpoint` or :meth:`load`.

    With ``pooling="classifier"`` (:meth:`for_classification`) the model is the architecture's own
    sequence-classification model (``AutoModelForSequenceClassification``) and the features are
    what its last classification layer takes (BERT's pooled ``[CLS]``, RoBERTa's dense + tanh of
    ``<s>``, GPT-2's last token that is not padding): a linear head on them is that layer, so the
    task model exports as a checkpoint ``transformers`` loads and runs as selfsup does."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer: HFTokenizer,
        source: str,
        causal: bool,
        max_length: int,
        pooling: str = "mean",
    ):
        super().__init__()
        config = model.config
        positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", 512)
        offset = getattr(getattr(model.base_model, "embeddings", None), "padding_idx", None)
        if offset is not None:  # RoBERTa's positions start after its padding id (514 for 512 tokens)
            positions -= offset + 1
        self.max_length = min(max_length, positions)
        self.spec = dict(
            modality="text",
            backbone=f"{PREFIX}{source}",
            causal=causal,
            max_length=self.max_length,
            pooling=pooling,
            tokenizer_kind=tokenizer.kind,
            model_type=config.model_type,
        )
        self.backbone = _States(model, tokenizer.to_hf)
        self.out_dim = int(config.hidden_size)
        self.attach_tokenizer(tokenizer)

    @property
    def model(self) -> nn.Module:
        return self.backbone.model

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        causal: bool,
        max_length: int,
        source: str | None = None,
        pooling: str = "mean",
    ):
        """The checkpoint folder ``path`` (``config.json``, weights, a fast tokenizer) with its LM
        output layer: ``AutoModelForCausalLM`` where ``causal``, else ``AutoModelForMaskedLM``
        (``AutoModelForSequenceClassification`` for ``pooling="classifier"``, a task model's
        encoder). Raises :class:`ConfigError` for a missing folder or a model that is not of that kind."""
        transformers = _transformers()
        path = Path(path).expanduser()
        if not (path / "config.json").is_file():
            raise ConfigError(f"--backbone hf:{path}: no Hugging Face checkpoint there (no config.json)")
        auto = transformers.AutoModelForCausalLM if causal else transformers.AutoModelForMaskedLM
        if pooling == "classifier":
            auto = transformers.AutoModelForSequenceClassification
        try:
            model = auto.from_pretrained(path, local_files_only=True)
        except ValueError as exc:
            kind = "a decoder (causal_lm: GPT-2, ...)" if causal else "an encoder (mlm: BERT, RoBERTa, ...)"
            raise ConfigError(f"hf:{path} is not {kind} model ({str(exc).splitlines()[0][:160]})") from None
        tokenizer = HFTokenizer(transformers.AutoTokenizer.from_pretrained(path, local_files_only=True))
        return cls(model, tokenizer, source or str(path), causal, max_length, pooling)

    @classmethod
    def load(cls, folder: Path, spec: dict) -> HFTextEncoder:
        """The encoder a run saved in ``folder`` (its ``hf/``) with ``spec`` (its ``encoder.json``)."""
        source = spec["backbone"][len(PREFIX) :]
        return cls.from_checkpoint(
            folder, spec["causal"], spec["max_length"], source, spec.get("pooling", "mean")
        )

    def for_classification(self, seed: int = 0) -> HFTextEncoder:
        """This encoder under its architecture's sequence-classification model: the same base
        model's weights, the head's own layers (a BERT pooler this LM lacks, RoBERTa's dense)
        initialised as ``transformers`` does with ``seed``; ``pooling="classifier"`` (see the
        class). Raises :class:`ConfigError` for an architecture without such a model."""
        if self.spec["pooling"] == "classifier":
            return self
        transformers = _transformers()
        config = copy.deepcopy(self.model.config)
        if config.pad_token_id is None:  # decoders find the last token by it: selfsup's padding
            config.pad_token_id = int(self.backbone.to_hf[0])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            try:
                model = transformers.AutoModelForSequenceClassification.from_config(config)
            except ValueError:
                raise ConfigError(
                    f"{config.model_type} has no sequence-classification model in transformers"
                ) from None
        model.base_model.load_state_dict(self.model.base_model.state_dict(), strict=False)
        model.to(next(self.model.parameters()).device).train(self.training)
        source = self.spec["backbone"][len(PREFIX) :]
        return HFTextEncoder(
            model, self.tokenizer, source, self.spec["causal"], self.max_length, "classifier"
        )

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if self.spec["pooling"] != "classifier":
            return super().forward(ids)
        ids = trim_padding(ids).long()
        hf_ids, taken = self.backbone.to_hf[ids], []
        layer = classification_layer(self.model)
        hook = layer.register_forward_pre_hook(lambda _, args: taken.append(args[0]))
        try:
            self.model(input_ids=hf_ids, attention_mask=(ids != 0).long())
        finally:
            hook.remove()
        features = taken[0]
        if features.dim() == 3:  # a decoder's head scores every position, then keeps the last real one
            pad = self.model.config.pad_token_id
            real = hf_ids != pad if pad is not None else torch.ones_like(hf_ids, dtype=torch.bool)
            positions = torch.arange(hf_ids.shape[1], device=ids.device)
            last = (positions * real).argmax(dim=-1)
            features = features[torch.arange(len(ids), device=ids.device), last]
        return features

    def lm_head(self, transform: bool = False) -> nn.Module:
        del transform  # the checkpoint's head is what it is (BERT's has its transform)
        model = self.model
        if hasattr(model, "vocab_projector"):  # DistilBERT keeps its head's parts apart
            layer = nn.Sequential(
                model.vocab_transform, model.activation, model.vocab_layer_norm, model.vocab_projector
            )
        else:
            layer = model.cls if hasattr(model, "cls") else model.get_output_embeddings()
        return _Head(layer, self.backbone.to_hf)

    def fresh(self) -> HFTextEncoder:
        """The same architecture and tokenizer, untrained (the from-scratch baseline)."""
        model = type(self.model)(self.model.config)
        source = self.spec["backbone"][len(PREFIX) :]
        return HFTextEncoder(
            model, self.tokenizer, source, self.spec["causal"], self.max_length, self.spec["pooling"]
        )

    def save_pretrained(self, folder: str | Path) -> None:
        """The model and its tokenizer with ``save_pretrained``: ``AutoModel.from_pretrained`` and
        ``AutoTokenizer.from_pretrained`` load the folder, and the tokenizer is ready for the
        standard code (:func:`finish_tokenizer`)."""
        positions = model_positions(self.model)
        if self.model.config.pad_token_id is None and self.tokenizer.hf.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.hf.eos_token_id
        self.model.save_pretrained(folder)
        self.tokenizer.hf.save_pretrained(folder)
        finish_tokenizer(folder, positions)


def classification_layer(model: nn.Module) -> nn.Linear:
    """The last layer of a sequence-classification model's head, the one giving the logits:
    ``classifier`` (BERT, DistilBERT), ``classifier.out_proj`` (RoBERTa, ELECTRA) or ``score``
    (GPT-2 and other decoders)."""
    head = getattr(model, "classifier", None)
    head = getattr(model, "score", None) if head is None else head
    if head is None:
        raise ConfigError(f"{type(model).__name__}: no classifier or score layer found")
    if isinstance(head, nn.Linear):
        return head
    if isinstance(getattr(head, "out_proj", None), nn.Linear):
        return head.out_proj
    return [m for m in head.modules() if isinstance(m, nn.Linear)][-1]


def save_sequence_classifier(encoder: HFTextEncoder, head: nn.Linear, classes: list[str], folder) -> None:
    """Write a task model of a ``pooling="classifier"`` encoder as the architecture's own
    sequence-classification checkpoint: ``head`` (features -> K logits) becomes its last
    classification layer, ``id2label`` names the classes; with the tokenizer
    (:func:`finish_tokenizer`). ``AutoModelForSequenceClassification.from_pretrained(folder)``
    then gives the logits selfsup's model gives. Raises :class:`ConfigError` where that layer has
    no bias (GPT-2's ``score``) and the head has one."""
    model = copy.deepcopy(encoder.model).cpu()
    layer = classification_layer(model)
    if layer.bias is None:
        raise ConfigError(
            f"--format hf: {model.config.model_type}'s classification layer has no bias, which the "
            "fitted head needs; export the classifier as safetensors"
        )
    fitted = nn.Linear(head.in_features, head.out_features)
    fitted.load_state_dict({k: v.detach().cpu() for k, v in head.state_dict().items()})
    name = next(n for n, m in model.named_modules() if m is layer)
    parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    setattr(parent, name.rpartition(".")[2], fitted)
    model.config.num_labels = len(classes)
    model.config.id2label = dict(enumerate(classes))
    model.config.label2id = {c: i for i, c in enumerate(classes)}
    model.num_labels = len(classes)
    model.save_pretrained(folder)
    encoder.tokenizer.hf.save_pretrained(folder)
    finish_tokenizer(folder, model_positions(model))


def model_positions(model: nn.Module) -> int | None:
    """How many tokens a ``transformers`` model's position embeddings take (None: no limit known).
    RoBERTa-style embeddings count positions after the padding id, so two fewer than their table."""
    config = model.config
    positions = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
    if positions is None:
        return None
    padding = getattr(getattr(model.base_model, "embeddings", None), "padding_idx", None)
    return positions - (padding + 1) if padding is not None else positions


def finish_tokenizer(folder: str | Path, positions: int | None) -> None:
    """Make the tokenizer saved in ``folder`` work with the standard ``transformers`` code:
    ``model_max_length`` at most the model's ``positions`` (``truncation=True`` then cuts a long
    text to what the model takes; a checkpoint without the setting has 1e30), a padding token (the
    end-of-text token where the checkpoint has none, as for GPT-2), right padding kept."""
    transformers = _transformers()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    if positions is not None and tokenizer.model_max_length > positions:
        tokenizer.model_max_length = positions
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.sep_token
    tokenizer.save_pretrained(folder)


def save_as_gpt2(encoder, folder: str | Path) -> None:
    """Write selfsup's own causal transformer (a ``causal_lm`` run's :class:`TextEncoder`) as a
    ``transformers`` GPT-2 with its tokenizer: the same pre-norm blocks (GELU, LayerNorm eps 1e-6),
    so ``AutoModel`` gives the same states. GPT-2's output layer has no bias; selfsup's LM head
    bias, which lives in the method, is not part of the encoder and is not written.
    Raises :class:`ConfigError` for a bidirectional encoder (no ``transformers`` architecture has
    its pre-norm blocks without an embedding LayerNorm)."""
    transformers = _transformers()
    spec = encoder.spec
    if not spec["causal"]:
        raise ConfigError(
            "--format hf: selfsup's own bidirectional transformer has no transformers architecture "
            "that loads it exactly; start from a checkpoint (--backbone hf:PATH) or use --format safetensors"
        )
    dim, net = spec["dim"], encoder.backbone
    config = transformers.GPT2Config(
        vocab_size=spec["vocab_size"],
        n_positions=spec["max_length"],
        n_embd=dim,
        n_layer=spec["depth"],
        n_head=spec["heads"],
        n_inner=4 * dim,
        activation_function="gelu",
        layer_norm_epsilon=1e-6,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
    )
    state = {"wte.weight": net.embed.tokens.weight, "wpe.weight": net.embed.positions.weight}
    state |= {"ln_f.weight": net.norm.weight, "ln_f.bias": net.norm.bias}
    for i, block in enumerate(net.blocks):  # GPT-2's Conv1D keeps its weights transposed
        pairs = {
            "ln_1": (block.norm1.weight, block.norm1.bias),
            "attn.c_attn": (block.self_attn.in_proj_weight.T, block.self_attn.in_proj_bias),
            "attn.c_proj": (block.self_attn.out_proj.weight.T, block.self_attn.out_proj.bias),
            "ln_2": (block.norm2.weight, block.norm2.bias),
            "mlp.c_fc": (block.linear1.weight.T, block.linear1.bias),
            "mlp.c_proj": (block.linear2.weight.T, block.linear2.bias),
        }
        for name, (weight, bias) in pairs.items():
            state[f"h.{i}.{name}.weight"], state[f"h.{i}.{name}.bias"] = weight, bias
    model = transformers.GPT2LMHeadModel(config)
    model.transformer.load_state_dict({k: v.detach().contiguous() for k, v in state.items()}, strict=True)
    model.save_pretrained(folder)
    _hf_tokenizer(encoder.tokenizer, transformers, spec["max_length"]).save_pretrained(folder)


def _hf_tokenizer(tokenizer, transformers, positions: int):
    """selfsup's ``tokenizers.Tokenizer`` as a ``transformers`` fast tokenizer that frames a text
    as selfsup does (``[CLS] … [SEP]``), cuts it at the model's ``positions`` when asked to
    truncate, and pads on the right."""
    from tokenizers import Tokenizer, processors

    copy = Tokenizer.from_str(tokenizer.to_str())
    copy.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    names = dict(
        pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]"
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=copy,
        bos_token="[CLS]",
        eos_token="[SEP]",
        model_max_length=positions,
        padding_side="right",
        **names,
    )
