"""Data pipeline of seesaw_train: corpus readers, tokenizers, uint16 token shards, and ``prepare``.

Flow (``prepare.prepare``): a :mod:`corpus` yields documents per split (train/val assigned by a seeded,
stable hash of each file's name) → :mod:`tokenizer` trains a byte-level BPE on the train split (or
loads T5's) → :mod:`shards` writes ``train.bin``/``val.bin`` (uint16, end-of-document after each
document) and ``meta.json`` with token counts and SHA-256 of each file.
"""

from .corpus import C4Corpus, CorpusUnavailable, LocalTextCorpus, StdlibCorpus, split_assignment, stdlib_files
from .shards import (
    MAX_VOCAB,
    TokenShard,
    batch_input_target,
    input_target,
    load_meta,
    verify_shards,
    write_shards,
)
from .tokenizer import TextTokenizer, load_t5_tokenizer, load_tokenizer, train_bpe

__all__ = [
    "MAX_VOCAB",
    "C4Corpus",
    "CorpusUnavailable",
    "LocalTextCorpus",
    "StdlibCorpus",
    "TextTokenizer",
    "TokenShard",
    "batch_input_target",
    "input_target",
    "load_meta",
    "load_t5_tokenizer",
    "load_tokenizer",
    "split_assignment",
    "stdlib_files",
    "train_bpe",
    "verify_shards",
    "write_shards",
]
