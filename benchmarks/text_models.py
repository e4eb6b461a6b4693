"""selfsup's text transformers (PyTorch layers) against Hugging Face `transformers` classes of the same size.

For each method, one training step (forward, backward, AdamW update) of selfsup's model and of the
Hugging Face model built from a config (never from the hub) with the same vocabulary, width, depth,
heads, MLP width and positions, dropout 0, on the same batch of token ids; the two are timed in
alternation in one process (median of the timed steps), in float32 and under bf16 autocast:

  mlm        selfsup MaskedLM          vs BertForMaskedLM
  causal_lm  selfsup CausalLM          vs GPT2LMHeadModel
  bart       selfsup BART (its noise)  vs BartForConditionalGeneration (on the same noised ids)

`transformers` is not a dependency of selfsup: install it into the benchmark's environment
(`pip install transformers`). Writes benchmarks/results/text_models.json.

    python benchmarks/text_models.py [--steps 10] [--batch 64] [--length 64]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from machine import machine_info

ROOT = Path(__file__).resolve().parents[1]
VOCAB, WIDTH, DEPTH, HEADS, MAX_LENGTH = 8000, 256, 4, 4, 128  # the text recipes' sizes


def selfsup_model(method: str, vocab):
    from selfsup.methods.text import BART, BARTParams, CausalLM, CausalLMParams, MaskedLM, MaskedLMParams
    from selfsup.models.text import TextEncoder

    build, params = {
        "mlm": (MaskedLM, MaskedLMParams()),
        "causal_lm": (CausalLM, CausalLMParams()),
        "bart": (BART, BARTParams()),
    }[method]
    encoder = TextEncoder(VOCAB, WIDTH, DEPTH, HEADS, MAX_LENGTH, **build.encoder_options(params))
    encoder.vocab = vocab
    return build(encoder, params)


def hugging_face_model(method: str):
    import transformers as hf

    if method == "mlm":
        return hf.BertForMaskedLM(
            hf.BertConfig(
                vocab_size=VOCAB,
                hidden_size=WIDTH,
                num_hidden_layers=DEPTH,
                num_attention_heads=HEADS,
                intermediate_size=4 * WIDTH,
                max_position_embeddings=MAX_LENGTH,
                hidden_dropout_prob=0.0,
                attention_probs_dropout_prob=0.0,
            )
        )
    if method == "causal_lm":
        return hf.GPT2LMHeadModel(
            hf.GPT2Config(
                vocab_size=VOCAB,
                n_positions=MAX_LENGTH,
                n_embd=WIDTH,
                n_layer=DEPTH,
                n_head=HEADS,
                resid_pdrop=0.0,
                embd_pdrop=0.0,
                attn_pdrop=0.0,
                bos_token_id=2,
                eos_token_id=3,
            )
        )
    return hf.BartForConditionalGeneration(
        hf.BartConfig(
            vocab_size=VOCAB,
            d_model=WIDTH,
            encoder_layers=DEPTH,
            decoder_layers=DEPTH,
            encoder_attention_heads=HEADS,
            decoder_attention_heads=HEADS,
            encoder_ffn_dim=4 * WIDTH,
            decoder_ffn_dim=4 * WIDTH,
            max_position_embeddings=MAX_LENGTH,
            dropout=0.0,
            attention_dropout=0.0,
            activation_dropout=0.0,
            pad_token_id=0,
            bos_token_id=2,
            eos_token_id=3,
            decoder_start_token_id=2,
        )
    )


def hugging_face_step(method: str, model, ids: torch.Tensor, vocab):
    """The Hugging Face model's loss on the same task and batch."""
    from selfsup.augment.text_noise import BartNoise, bart_noise, mlm_mask

    if method == "mlm":
        inputs, targets = mlm_mask(ids, vocab)
        return model(input_ids=inputs, attention_mask=(inputs != 0).long(), labels=targets).loss
    if method == "causal_lm":
        return model(input_ids=ids, labels=ids.masked_fill(ids == 0, -100)).loss
    noisy = bart_noise(ids, vocab, BartNoise(), MAX_LENGTH)
    return model(
        input_ids=noisy,
        attention_mask=(noisy != 0).long(),
        decoder_input_ids=ids[:, :-1],
        labels=ids[:, 1:].masked_fill(ids[:, 1:] == 0, -100),
    ).loss


def time_steps(step, model, steps: int, dtype) -> list[float]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    times = []
    for i in range(steps + 2):  # two warm-up steps
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
            loss = step()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i >= 2:
            times.append(time.perf_counter() - started)
    return times


def main() -> None:
    import transformers

    from selfsup.data.tokenizer import Vocabulary

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument(
        "--length", type=int, default=64, help="tokens per document (AG News averages 62 here)"
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    size = torch.Size([VOCAB])
    # a vocabulary in which every 8th token ends a sentence and every token starts a word
    vocab = Vocabulary(
        VOCAB,
        "wordpiece",
        torch.ones(size, dtype=torch.bool),
        torch.zeros(size, dtype=torch.bool),
        torch.arange(VOCAB) % 8 == 0,
        torch.ones(size),
    )
    ids = torch.randint(5, VOCAB, (args.batch, args.length))
    ids[:, 0], ids[:, -1] = 2, 3
    rows = []
    for method in ("mlm", "causal_lm", "bart"):
        ours, theirs = selfsup_model(method, vocab), hugging_face_model(method)
        for dtype in ("fp32", "bf16"):
            times = {"selfsup": [], "transformers": []}
            for _ in range(2):  # alternate, so that neither runs only while the machine is warm
                # the lambdas are called at once, inside this iteration
                times["selfsup"] += time_steps(lambda: ours([ids]).loss, ours, args.steps // 2, dtype)  # noqa: B023
                times["transformers"] += time_steps(
                    lambda: hugging_face_step(method, theirs, ids, vocab),  # noqa: B023
                    theirs,
                    args.steps // 2,
                    dtype,
                )
            row = {
                "method": method,
                "precision": dtype,
                "selfsup_s": statistics.median(times["selfsup"]),
                "transformers_s": statistics.median(times["transformers"]),
                "selfsup_parameters": sum(p.numel() for p in ours.parameters()),
                "transformers_parameters": sum(p.numel() for p in theirs.parameters()),
                "times": times,
            }
            row["speedup"] = row["transformers_s"] / row["selfsup_s"]
            rows.append(row)
            print(
                f"{method:9} {dtype}: selfsup {row['selfsup_s']:.3f} s/step, "
                f"transformers {row['transformers_s']:.3f} "
                f"s/step ({row['speedup']:.2f}×); parameters {row['selfsup_parameters'] / 1e6:.2f} M vs "
                f"{row['transformers_parameters'] / 1e6:.2f} M",
                flush=True,
            )
    out = ROOT / "benchmarks" / "results" / "text_models.json"
    out.write_text(
        json.dumps(
            {
                "machine": machine_info(),
                "transformers": transformers.__version__,
                "batch": args.batch,
                "length": args.length,
                "steps": args.steps,
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"saved {out}")
    print(
        f"median speed-up over transformers (all rows): {statistics.median(r['speedup'] for r in rows):.2f}×"
    )


if __name__ == "__main__":
    main()
