"""Tiny Hugging Face checkpoints built offline (a tokenizer trained on a few texts, a small random
model) and saved with ``save_pretrained``: what ``--backbone hf:PATH`` reads in the tests."""

from pathlib import Path


def tiny_bert(folder: Path, texts: list[str], hidden: int = 32, layers: int = 2, positions: int = 64) -> Path:
    """A BERT masked LM with a WordPiece tokenizer whose special tokens are not at selfsup's ids
    (an ``[unused0]`` before ``[UNK]``, as in BERT's own vocabulary)."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    specials = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=400, special_tokens=specials))
    tokenizer.post_processor = processors.BertProcessing(("[SEP]", 4), ("[CLS]", 3))
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
        num_attention_heads=2,
        intermediate_size=2 * hidden,
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
