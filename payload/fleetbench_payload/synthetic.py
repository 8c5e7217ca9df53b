"""A DistilBERT-base with seeded random weights and a WordPiece vocabulary trained on SST-2 train.tsv.

For hosts that cannot get the real model: the architecture (and so the speed) is real, the accuracy is not.
It is built once per key into the host cache and reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import tokenizers
import tokenizers.normalizers
import torch
import transformers
from tokenizers.pre_tokenizers import BertPreTokenizer
from transformers import DistilBertConfig, DistilBertForSequenceClassification, DistilBertTokenizerFast

from fleetbench_payload.dataset import read_sst2
from fleetbench_payload.log import Log

SEED = 0
RECIPE = 2  # part of the cache key: bump it when the build below changes
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]  # [PAD] = id 0 = DistilBertConfig.pad_token_id
LABELS = {0: "NEGATIVE", 1: "POSITIVE"}


def build_tokenizer(sentences: Iterable[str], vocab_size: int, out_dir: Path) -> DistilBertTokenizerFast:
    """A lower-casing WordPiece vocabulary from ``sentences``, saved as a DistilBERT tokenizer in ``out_dir``.

    Built by counting, not by tokenizers' trainer: the trainer breaks frequency ties in hash order, so two hosts
    building "the same" model got different vocabularies. Here: every character seen (alone and as a ``##``
    continuation, so any word can be spelt), then whole words by (frequency desc, word), up to ``vocab_size``.
    """
    normalizer, pre_tokenizer = tokenizers.normalizers.BertNormalizer(lowercase=True), BertPreTokenizer()
    counts = Counter(word for sentence in sentences
                     for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(sentence)))
    chars = sorted({c for word in counts for c in word})
    alphabet = chars + [f"##{c}" for c in chars]
    taken = set(SPECIAL_TOKENS) | set(alphabet)
    words = [w for w, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0])) if w not in taken]
    tokens = SPECIAL_TOKENS + alphabet + words[:max(0, vocab_size - len(SPECIAL_TOKENS) - len(alphabet))]
    (out_dir / "vocab.txt").write_text("".join(f"{t}\n" for t in tokens), encoding="utf-8")
    tokenizer = DistilBertTokenizerFast(vocab_file=str(out_dir / "vocab.txt"), do_lower_case=True,
                                        model_max_length=512)
    tokenizer.save_pretrained(out_dir)
    return tokenizer


def ensure(cache_dir: Path, train_tsv: Path, log: Log) -> tuple[Path, str]:
    """The model folder (built now or reused) and its key."""
    train = read_sst2(train_tsv)
    config = DistilBertConfig(id2label=LABELS, label2id={v: k for k, v in LABELS.items()})  # base defaults
    spec = {"recipe": RECIPE, "config": config.to_dict(), "seed": SEED, "train_sha256": train.sha256,
            "transformers": transformers.__version__, "tokenizers": tokenizers.__version__, "torch": torch.__version__}
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    final = cache_dir / f"synthetic-{key}"
    if (final / "config.json").is_file():
        log.info(f"reusing synthetic model {final}")
        return final, key
    log.info(f"building synthetic DistilBERT-base (random weights, seed {SEED}) into {final}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=cache_dir))
    try:
        build_tokenizer(train.sentences, config.vocab_size, tmp)
        torch.manual_seed(SEED)
        DistilBertForSequenceClassification(config).save_pretrained(tmp, safe_serialization=True)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "config.json").is_file():
                raise
            log.info("another run built the same synthetic model first; using it")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final, key
