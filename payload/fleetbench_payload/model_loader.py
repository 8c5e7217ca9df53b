"""Load a sequence-classification model and its tokenizer from a local folder (never the network)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer


def load(folder: Path, use_safetensors: bool) -> tuple[torch.nn.Module, Any, torch.Tensor]:
    """The model in eval mode returning tuples (traceable), its tokenizer, and a tensor mapping each output
    index to the SST-2 label (1 = positive)."""
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(
        folder, local_files_only=True, use_safetensors=use_safetensors, torchscript=True, torch_dtype=torch.float32)
    model.eval()
    return model, tokenizer, sst2_labels(model.config.id2label)


def sst2_labels(id2label: dict[int, str]) -> torch.Tensor:
    if len(id2label) != 2:
        raise ValueError(f"the model has {len(id2label)} output labels; SST-2 needs 2")
    names = {int(i): str(name).upper() for i, name in id2label.items()}
    if set(names.values()) == {"NEGATIVE", "POSITIVE"}:
        return torch.tensor([int(names[i] == "POSITIVE") for i in range(2)])
    return torch.tensor([0, 1])  # LABEL_0/LABEL_1: output index = label
