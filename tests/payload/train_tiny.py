"""Train a tiny DistilBERT-architecture SST-2 classifier, so tests can check accuracy end to end in minutes.

Run with the stack venv's python: ``train_tiny.py --train train.tsv --dev dev.tsv --out DIR``. DIR gets what a
Hub snapshot holds (config.json, model.safetensors, tokenizer files) and loads through the payload's loader.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

import torch
from transformers import DistilBertConfig, DistilBertForSequenceClassification

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "payload"))
from fleetbench_payload.dataset import read_sst2
from fleetbench_payload.synthetic import LABELS, build_tokenizer

SEED = 0
VOCAB = 8000
SEQ = 64
BATCH = 128
EPOCHS = 2
LR = 2e-3


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--dev", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    started = time.monotonic()
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    random.seed(SEED)
    torch.manual_seed(SEED)

    train, dev = read_sst2(args.train), read_sst2(args.dev)
    args.out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(train.sentences, VOCAB, args.out)
    config = DistilBertConfig(vocab_size=len(tokenizer), dim=128, n_layers=2, n_heads=4, hidden_dim=512,
                              id2label=LABELS, label2id={v: k for k, v in LABELS.items()})
    model = DistilBertForSequenceClassification(config)

    encoded = tokenizer(train.sentences, truncation=True, max_length=SEQ)["input_ids"]
    batches = [b for _ in range(EPOCHS) for b in length_buckets(encoded)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=LR, total_steps=len(batches), pct_start=0.1)
    model.train()
    for step, rows in enumerate(batches, start=1):
        ids, mask = pad([encoded[r] for r in rows])
        loss = model(input_ids=ids, attention_mask=mask, labels=torch.tensor([train.labels[r] for r in rows])).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 200 == 0:
            print(f"step {step}/{len(batches)} loss {loss.item():.3f}", flush=True)

    model.eval()
    correct = 0
    dev_ids = tokenizer(dev.sentences, truncation=True, max_length=128)["input_ids"]
    with torch.no_grad():
        for i in range(0, len(dev_ids), 128):
            ids, mask = pad(dev_ids[i:i + 128])
            predicted = model(input_ids=ids, attention_mask=mask).logits.argmax(-1)
            correct += int((predicted == torch.tensor(dev.labels[i:i + 128])).sum())
    model.save_pretrained(args.out, safe_serialization=True)
    report = {"dev_accuracy": 100 * correct / len(dev_ids), "train_seconds": round(time.monotonic() - started, 1)}
    print(json.dumps(report), flush=True)
    return 0


def length_buckets(encoded: list[list[int]]) -> list[list[int]]:
    """Shuffled batches of similar length (sorted within pools of 50 batches): far less padding to compute."""
    order = list(range(len(encoded)))
    random.shuffle(order)
    pool = 50 * BATCH
    batches = []
    for i in range(0, len(order), pool):
        chunk = sorted(order[i:i + pool], key=lambda r: len(encoded[r]))
        batches += [chunk[j:j + BATCH] for j in range(0, len(chunk), BATCH)]
    random.shuffle(batches)
    return batches


def pad(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad to the longest row (id 0 = [PAD]): short SST-2 phrases train much faster than fixed-length ones."""
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
        mask[i, :len(r)] = 1
    return ids, mask


if __name__ == "__main__":
    sys.exit(main())
