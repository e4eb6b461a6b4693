"""Tiny Hugging Face checkpoints built offline (a tokenizer trained on a few texts, a small random
model) and saved with ``save_pretrained``: what ``--backbone hf:PATH`` reads in the tests."""

from pathlib import Path


def tiny_bert(
    folder: Path,
    texts: list[str],
    hidden: int = 32,
    layers: int = 2,
    positions: int = 64,
    heads: int = 2,
    vocab: int = 400,
    unused: bool = True,
) -> Path:
    """A BERT masked LM with a WordPiece tokenizer trained on ``texts``; with ``unused`` its special
    tokens are not at selfsup's ids (an ``[unused0]`` before ``[UNK]``, as in BERT's own vocabulary).
    The MLP is ``4 * hidden`` wide, as in BERT. Also builds the benchmark's "general" checkpoint."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    specials = ["[PAD]", *(["[unused0]"] if unused else []), "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab, special_tokens=specials))
    tokenizer.post_processor = processors.BertProcessing(
        ("[SEP]", specials.index("[SEP]")), ("[CLS]", specials.index("[CLS]"))
    )
    hf = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    config = transformers.BertConfig(
        vocab_size=len(hf),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        max_position_embeddings=positions,
    )
    transformers.BertForMaskedLM(config).save_pretrained(folder)
    hf.save_pretrained(folder)
    return folder


def tiny_gpt2(folder: Path, texts: list[str]) -> Path:
    """A GPT-2 causal LM with a byte-level BPE tokenizer whose one special token, <|endoftext|>,
    is its last id, as in GPT-2's (no padding, no [MASK])."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(
        texts, trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    )
    tokenizer.add_special_tokens(["<|endoftext|>"])
    end = "<|endoftext|>"
    hf = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=end, eos_token=end, unk_token=end
    )
    config = transformers.GPT2Config(vocab_size=len(hf), n_embd=32, n_layer=2, n_head=2, n_positions=64)
    transformers.GPT2LMHeadModel(config).save_pretrained(folder)
    hf.save_pretrained(folder)
    return folder


def tiny_encoder(folder: Path, texts: list[str], model_type: str) -> Path:
    """A RoBERTa (byte-level BPE; <s> <pad> </s> <unk> first, <mask> last, positions offset by
    the padding id) or a DistilBERT (WordPiece, its output layer in four parts) masked LM."""
    import transformers

    if model_type == "distilbert":
        tiny_bert(folder, texts)  # then the same tokenizer under a DistilBERT
        config = transformers.DistilBertConfig(
            vocab_size=len(transformers.AutoTokenizer.from_pretrained(folder)),
            dim=32,
            n_layers=2,
            n_heads=2,
            hidden_dim=64,
            max_position_embeddings=64,
        )
        transformers.DistilBertForMaskedLM(config).save_pretrained(folder)
        return folder
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(texts, trainer)
    tokenizer.add_special_tokens(["<mask>"])
    tokenizer.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    hf = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        cls_token="<s>",
        sep_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
    )
    config = transformers.RobertaConfig(
        vocab_size=len(hf),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=34,
        pad_token_id=1,
    )
    transformers.RobertaForMaskedLM(config).save_pretrained(folder)
    hf.save_pretrained(folder)
    return folder
