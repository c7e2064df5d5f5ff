"""Train the small French sentence model shipped as flaubert_np/models/demo/ (short name "demo").

    /work/venv/bin/python tools/train_demo_model.py      # about 4 minutes of CPU, one thread

Everything it learns from is in the repository: the sentences of the French STS benchmark's
train split (tests/data/stsb-fr/train.csv). The dev split takes no part in training: the model
card quotes the dev score measured at the end.

1. BPE vocabulary (tools/learn_bpe.py), lowercased, as in FlauBERT uncased.
2. Masked-language-model pre-training of a small FlauBERT (transformers' FlaubertWithLMHeadModel)
   on the unique train sentences.
3. Fine-tuning of its encoder + mean pooling with sentence-transformers' CosineSimilarityLoss on
   the train pairs (gold score / 5 as the target cosine).
4. Save in the sentence-transformers layout (safetensors) with a generated model card, then score
   the dev split (Spearman x 100 of cosine vs gold, as tools/eval_sts.py does).

Deterministic: fixed seed, one torch thread (on a busy 2-core machine, one thread also trained
this tiny model faster than two), torch.use_deterministic_algorithms. Dev-only
dependencies: torch, transformers and sentence-transformers (>= 6: the module paths it imports).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from oracles import require

require("train_demo_model.py", "torch", "transformers", "sentence_transformers")

import torch  # noqa: E402

from eval_sts import evaluate, read_sts_csv  # noqa: E402
from learn_bpe import learn_bpe  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

TRAIN_CSV = ROOT / "tests" / "data" / "stsb-fr" / "train.csv"
DEV_CSV = ROOT / "tests" / "data" / "stsb-fr" / "dev.csv"
OUT_DIR = ROOT / "flaubert_np" / "models" / "demo"

# The files a sentence-transformers model directory needs; nothing else is shipped.
SHIPPED = [
    "README.md",
    "config.json",
    "model.safetensors",
    "vocab.json",
    "merges.txt",
    "tokenizer_config.json",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "1_Pooling/config.json",
]

HPARAMS = {
    "seed": 0,
    "threads": 1,
    "bpe_merges": 4000,
    "emb_dim": 128,
    "n_layers": 4,
    "n_heads": 4,
    "max_seq_length": 128,
    "mlm_epochs": 5,
    "mlm_batch_size": 64,
    "mlm_lr": 1e-3,
    "mlm_probability": 0.15,
    "sts_epochs": 4,
    "sts_batch_size": 32,
    "sts_lr": 5e-4,
    "warmup": 0.06,
    "weight_decay": 0.01,
}


def deterministic_torch(threads: int) -> None:
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)


def linear_schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup: float):
    """Linear warm-up (the first step already at 1/warmup_steps of the rate), then linear decay
    to zero; close to transformers' get_linear_schedule_with_warmup, whose first step is at 0."""
    warmup_steps = max(1, int(warmup * total_steps))

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def step(loss, model, optimizer, schedule) -> float:
    """One optimisation step on `loss` (gradients clipped at norm 1); the loss's value."""
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    schedule.step()
    optimizer.zero_grad()
    return loss.item()


def mask_tokens(
    input_ids: torch.Tensor,
    special: torch.Tensor,
    mask_index: int,
    n_words: int,
    probability: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: choose `probability` of the non-special tokens; 80% of them become the mask
    token, 10% a random token, 10% stay."""
    # [batch, seq] -> inputs [batch, seq], labels [batch, seq] (-100 where nothing is predicted)
    chosen = (torch.rand(input_ids.shape, generator=generator) < probability) & ~special
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
    action = torch.rand(input_ids.shape, generator=generator)
    random_ids = torch.randint(n_words, input_ids.shape, generator=generator)
    inputs = torch.where(chosen & (action < 0.8), torch.full_like(input_ids, mask_index), input_ids)
    inputs = torch.where(chosen & (action >= 0.8) & (action < 0.9), random_ids, inputs)
    return inputs, labels


def length_batches(
    lengths: list[int], batch_size: int, generator: torch.Generator
) -> list[list[int]]:
    """One epoch of batches of indices, shuffled, of similar lengths within a batch.

    Random batches of these short sentences would be two-thirds padding: shuffle, sort each
    window of 50 batches by length, cut it into batches, then shuffle the batches.
    """
    order = torch.randperm(len(lengths), generator=generator).tolist()
    window = 50 * batch_size
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def pad_batch(sequences: list[list[int]], pad_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    # list of [len_i] -> input_ids [batch, max_len], attention_mask [batch, max_len]
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_index, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    return ids, mask


def pretrain_mlm(sentences: list[str], tokenizer, hp: dict, work: Path) -> Path:
    """Masked-language-model pre-training; returns the directory of the bare encoder."""
    from transformers import FlaubertConfig, FlaubertWithLMHeadModel

    config = FlaubertConfig(
        vocab_size=len(tokenizer),
        emb_dim=hp["emb_dim"],
        n_layers=hp["n_layers"],
        n_heads=hp["n_heads"],
        max_position_embeddings=hp["max_seq_length"],
        embed_init_std=hp["emb_dim"] ** -0.5,
        layer_norm_eps=1e-12,
        dropout=0.1,
        attention_dropout=0.1,
        gelu_activation=True,
        pre_norm=False,
        n_langs=1,
        pad_index=tokenizer.pad_token_id,
        unk_index=tokenizer.unk_token_id,
        mask_index=tokenizer.mask_token_id,
        bos_index=tokenizer.bos_token_id,
        eos_index=tokenizer.sep_token_id,
    )
    torch.manual_seed(hp["seed"])  # weight init and dropout; masking and batches use `generator`
    model = FlaubertWithLMHeadModel(config)
    encoded = tokenizer(sentences, truncation=True, max_length=hp["max_seq_length"])["input_ids"]
    special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)))
    generator = torch.Generator().manual_seed(hp["seed"])
    lengths = [len(ids) for ids in encoded]
    steps_per_epoch = len(length_batches(lengths, hp["mlm_batch_size"], torch.Generator()))
    total = hp["mlm_epochs"] * steps_per_epoch
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=hp["mlm_lr"], weight_decay=hp["weight_decay"]
    )
    schedule = linear_schedule(optimizer, total, hp["warmup"])
    model.train()
    for epoch in range(hp["mlm_epochs"]):
        running = 0.0
        for batch in length_batches(lengths, hp["mlm_batch_size"], generator):
            ids, mask = pad_batch([encoded[i] for i in batch], config.pad_index)
            inputs, labels = mask_tokens(
                ids,
                torch.isin(ids, special_ids),
                config.mask_index,
                config.vocab_size,
                hp["mlm_probability"],
                generator,
            )
            hidden = model.transformer(input_ids=inputs, attention_mask=mask)[0]
            # the vocabulary projection is the costliest layer: apply it to masked tokens only
            predicted = labels != -100
            logits = model.pred_layer.proj(hidden[predicted])  # [n_masked, n_words]
            loss = torch.nn.functional.cross_entropy(logits, labels[predicted])
            running += step(loss, model, optimizer, schedule)
        print(
            f"  mlm epoch {epoch + 1}/{hp['mlm_epochs']}: loss {running / steps_per_epoch:.3f}",
            flush=True,
        )
    encoder_dir = work / "encoder"
    model.transformer.save_pretrained(encoder_dir)
    tokenizer.save_pretrained(encoder_dir)
    return encoder_dir


def finetune_sts(encoder_dir: Path, hp: dict):
    """Encoder + mean pooling, trained with CosineSimilarityLoss on the STS train pairs."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import CosineSimilarityLoss
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    torch.manual_seed(hp["seed"])  # dropout; batches use `generator`
    transformer = Transformer(str(encoder_dir), max_seq_length=hp["max_seq_length"])
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    model = SentenceTransformer(modules=[transformer, pooling], device="cpu")
    loss_fn = CosineSimilarityLoss(model)
    first, second, scores = read_sts_csv(TRAIN_CSV)
    targets = torch.tensor(scores / 5.0, dtype=torch.float32)
    generator = torch.Generator().manual_seed(hp["seed"] + 1)
    lengths = [max(len(a), len(b)) for a, b in zip(first, second, strict=True)]  # in characters
    steps_per_epoch = len(length_batches(lengths, hp["sts_batch_size"], torch.Generator()))
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=hp["sts_lr"], weight_decay=hp["weight_decay"]
    )
    schedule = linear_schedule(optimizer, hp["sts_epochs"] * steps_per_epoch, hp["warmup"])
    model.train()
    for epoch in range(hp["sts_epochs"]):
        running = 0.0
        for batch in length_batches(lengths, hp["sts_batch_size"], generator):
            features = [
                model.preprocess([first[i] for i in batch]),
                model.preprocess([second[i] for i in batch]),
            ]
            loss = loss_fn(features, targets[batch])
            running += step(loss, model, optimizer, schedule)
        print(
            f"  sts epoch {epoch + 1}/{hp['sts_epochs']}: loss {running / steps_per_epoch:.4f}",
            flush=True,
        )
    model.eval()
    return model


def score_dev(model) -> dict[str, float]:
    """Spearman/Pearson x 100 on the dev split, as tools/eval_sts.py scores a model."""
    return evaluate(model, *read_sts_csv(DEV_CSV))


def model_card(
    hp: dict,
    n_sentences: int,
    n_words: int,
    n_params: int,
    size_mb: float,
    seconds: dict[str, float],
    dev: dict[str, float],
) -> str:
    d = hp["emb_dim"]
    return f"""\
# demo: a tiny French sentence-embedding model for flaubert-np

A small FlauBERT-architecture sentence model shipped inside the flaubert-np package, so that the
quick start, the tests and machines without network have a French model without the Hugging
Face Hub. Load it by its short name:

```python
from flaubert_np import SentenceEncoder

encoder = SentenceEncoder.from_pretrained("demo")
```

or `flaubert-np similarity "Une phrase." "Une autre phrase."` (`demo` is the default model).

- **What it is for:** offline demos, tests, trying flaubert-np without a download.
- **What it is not:** a substitute for a real model. It learnt all its French from
  {n_sentences:,} short sentences. For real work use a pre-trained model from the Hub, such as
  `hugorosen/flaubert_base_uncased-xnli-sts`.

## Measured score

French STS benchmark, **dev** split ({dev["pairs"]} pairs): correlation between the cosine
similarity of the two sentence embeddings and the gold score.

| Spearman x 100 | Pearson x 100 |
|---|---|
| {dev["spearman"]:.2f} | {dev["pearson"]:.2f} |

Measured with `python tools/eval_sts.py --model demo --data tests/data/stsb-fr/dev.csv`. No other
figure is claimed: the model was not evaluated on the test split nor on any other task. The dev
split took no part in training, but the hyper-parameters below were chosen after a few trial
runs scored on it.

## Architecture

- FlauBERT encoder (transformers' `FlaubertModel`): {hp["n_layers"]} layers, {hp["n_heads"]} \
heads, hidden size {d}, feed-forward {4 * d}, GELU, post-norm, learnt positions (at most \
{hp["max_seq_length"]} tokens).
- {n_params:,} parameters: {size_mb:.1f} MB of float32 safetensors.
- Vocabulary: {n_words:,} BPE tokens, lowercased, in FlauBERT's format (Moses tokenization,
  `vocab.json` + `merges.txt`).
- Sentence embedding: mean pooling of the last layer, {d} dimensions; `max_seq_length` \
{hp["max_seq_length"]}.

## Training

Data: only the train split (5,749 pairs) of the French STS benchmark, `stsb_multi_mt` by Philip
May (https://github.com/PhilipMay/stsb-multi-mt), machine-translated with DeepL from the STS
benchmark of Cer et al. (2017). Scores licensed CC BY-SA 4.0; the sentences keep the licenses of
the original STS benchmark sources. See `tests/data/stsb-fr/README.md`.

1. BPE: {hp["bpe_merges"]:,} merges learnt by `tools/learn_bpe.py` from the {n_sentences:,} \
unique train sentences, lowercased.
2. Masked-language-model pre-training (`FlaubertWithLMHeadModel`) on the same sentences: \
{hp["mlm_epochs"]} epochs, batch {hp["mlm_batch_size"]}, {hp["mlm_probability"]:.0%} of the \
tokens predicted (80% replaced by `<special1>`, 10% by a random token, 10% unchanged), AdamW \
lr {hp["mlm_lr"]:g}, dropout 0.1.
3. Fine-tuning of encoder + mean pooling with sentence-transformers' `CosineSimilarityLoss` on \
the train pairs (target cosine: gold score / 5): {hp["sts_epochs"]} epochs, batch \
{hp["sts_batch_size"]} pairs, AdamW lr {hp["sts_lr"]:g}.

Both phases: weight decay {hp["weight_decay"]:g}, linear warm-up over {hp["warmup"]:.0%} of the \
steps then linear decay, batches of similar lengths. Seed {hp["seed"]}, {hp["threads"]} torch \
thread, `torch.use_deterministic_algorithms(True)`. CPU time of the run that wrote these files: \
{sum(seconds.values()) / 60:.1f} minutes (BPE {seconds["bpe"]:.0f} s, pre-training \
{seconds["mlm"]:.0f} s, fine-tuning {seconds["sts"]:.0f} s). Reproduce with:

```
python tools/train_demo_model.py
```

## License

The weights derive from the STS benchmark data above, whose scores are CC BY-SA 4.0: the model is
shared under the same terms, with this attribution.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=OUT_DIR,
        help=f"output directory (default: {OUT_DIR.relative_to(ROOT)})",
    )
    args = parser.parse_args(argv)
    hp = dict(HPARAMS)
    deterministic_torch(hp["threads"])
    from transformers import FlaubertTokenizer

    first, second, _ = read_sts_csv(TRAIN_CSV)
    sentences = sorted(set(first) | set(second))
    seconds = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        start = time.process_time()
        print(f"BPE: {hp['bpe_merges']} merges on {len(sentences)} sentences", flush=True)
        learn_bpe(sentences, hp["bpe_merges"], work / "bpe", lowercase=True)
        tokenizer = FlaubertTokenizer(
            str(work / "bpe" / "vocab.json"),
            str(work / "bpe" / "merges.txt"),
            do_lowercase=True,
            model_max_length=hp["max_seq_length"],
        )
        seconds["bpe"] = time.process_time() - start
        print(f"  {len(tokenizer)} tokens, {seconds['bpe']:.0f} s CPU", flush=True)

        start = time.process_time()
        print("MLM pre-training", flush=True)
        encoder_dir = pretrain_mlm(sentences, tokenizer, hp, work)
        seconds["mlm"] = time.process_time() - start
        print(f"  {seconds['mlm']:.0f} s CPU", flush=True)

        start = time.process_time()
        print("STS fine-tuning", flush=True)
        model = finetune_sts(encoder_dir, hp)
        seconds["sts"] = time.process_time() - start
        print(f"  {seconds['sts']:.0f} s CPU", flush=True)

        saved = work / "saved"
        model.save(str(saved), safe_serialization=True)
        missing = [name for name in SHIPPED if name != "README.md" and not (saved / name).is_file()]
        if missing:
            raise SystemExit(f"train_demo_model.py: sentence-transformers did not write {missing}")
        dev = score_dev(model)
        n_params = sum(p.numel() for p in model.parameters())
        size_mb = (saved / "model.safetensors").stat().st_size / 1e6
        with open(saved / "vocab.json", encoding="utf-8") as f:
            n_words = len(json.load(f))
        card = model_card(hp, len(sentences), n_words, n_params, size_mb, seconds, dev)
        (saved / "README.md").write_text(card, encoding="utf-8")
        for name in SHIPPED:
            target = args.out / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(saved / name, target)
    print(
        f"saved to {args.out}; dev spearman {dev['spearman']:.2f}, pearson "
        f"{dev['pearson']:.2f}; {sum(seconds.values()) / 60:.1f} min CPU"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
