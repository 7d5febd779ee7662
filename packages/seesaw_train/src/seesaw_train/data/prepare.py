"""Prepare token shards: corpus → tokenizer → ``train.bin`` / ``val.bin`` / ``meta.json``.

    python -m seesaw_train.data.prepare --config prepare.yaml --out data/stdlib-bpe4k

The config (YAML/JSON file, JSON string, or a mapping given to :func:`prepare`) has two blocks; every
key is optional and unknown keys are refused naming the key::

    corpus:
      kind: stdlib          # stdlib | text | c4
      val_fraction: 0.05    # share of files (records for JSONL) in val; C4 uses its validation split
      seed: 0               # split seed
      max_files: null       # stdlib/text: keep the first N files in sorted order (ci/tests)
      root: null            # stdlib: another standard-library folder
      pattern: null         # text: glob of files (required for kind text)
      text_field: text      # text: JSONL field holding the document
      max_documents: null   # c4: train documents to stream (required for kind c4)
      val_documents: null   # c4: validation documents (default max(1, round(val_fraction·max_documents)))
    tokenizer:
      kind: bpe             # bpe (trained here on the train split) | t5 (google-t5/t5-base) | file
      vocab_size: 4096      # bpe only
      min_frequency: 2      # bpe only
      train_max_documents: null  # bpe: train on the first N train documents only
      name: google-t5/t5-base    # t5 only
      path: null            # file: an existing tokenizer.json

The tokenizer is trained on the train split only (the validation text stays unseen). It is saved as
``tokenizer.json`` in the output folder, and ``meta.json`` records it relative to that folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .corpus import SPLITS, C4Corpus, Corpus, LocalTextCorpus, StdlibCorpus, take
from .shards import MAX_VOCAB, write_shards
from .tokenizer import T5_NAME, TextTokenizer, file_sha256, load_t5_tokenizer, load_tokenizer, train_bpe

ENCODE_BATCH = 64  # documents per encode_batch call


@dataclass(frozen=True)
class CorpusConfig:
    kind: str = "stdlib"
    val_fraction: float = 0.05
    seed: int = 0
    max_files: int | None = None
    root: str | None = None
    pattern: str | None = None
    text_field: str = "text"
    max_documents: int | None = None
    val_documents: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("stdlib", "text", "c4"):
            raise ValueError(f"corpus.kind must be stdlib, text or c4, got {self.kind!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"corpus.val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.max_files is not None and self.max_files < 1:
            raise ValueError(f"corpus.max_files must be >= 1, got {self.max_files}")
        if self.kind == "text" and not self.pattern:
            raise ValueError("corpus.pattern is required for corpus.kind text")
        if self.kind == "c4" and (self.max_documents is None or self.max_documents < 1):
            raise ValueError("corpus.max_documents (>= 1) is required for corpus.kind c4")


@dataclass(frozen=True)
class TokenizerConfig:
    kind: str = "bpe"
    vocab_size: int = 4096
    min_frequency: int = 2
    train_max_documents: int | None = None
    name: str = T5_NAME
    path: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("bpe", "t5", "file"):
            raise ValueError(f"tokenizer.kind must be bpe, t5 or file, got {self.kind!r}")
        if self.kind == "bpe" and not 258 <= self.vocab_size <= MAX_VOCAB:
            raise ValueError(f"tokenizer.vocab_size must be in [258, {MAX_VOCAB}], got {self.vocab_size}")
        if self.kind == "file" and not self.path:
            raise ValueError("tokenizer.path is required for tokenizer.kind file")


@dataclass(frozen=True)
class PrepareConfig:
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)


def parse_config(config: Mapping[str, Any] | PrepareConfig | None) -> PrepareConfig:
    """Typed config from a mapping; errors name the offending key (``prepare.corpus.kind``)."""
    if isinstance(config, PrepareConfig):
        return config
    from fulcrum_core.config import from_mapping

    return from_mapping(PrepareConfig, config or {}, "prepare")


def build_corpus(cfg: CorpusConfig) -> Corpus:
    if cfg.kind == "stdlib":
        root = Path(cfg.root) if cfg.root else None
        return StdlibCorpus(root, val_fraction=cfg.val_fraction, seed=cfg.seed, max_files=cfg.max_files)
    if cfg.kind == "text":
        assert cfg.pattern is not None
        return LocalTextCorpus(
            cfg.pattern, cfg.text_field, val_fraction=cfg.val_fraction, seed=cfg.seed, max_files=cfg.max_files
        )
    assert cfg.max_documents is not None
    return C4Corpus(cfg.max_documents, cfg.val_documents, val_fraction=cfg.val_fraction)


def build_tokenizer(cfg: TokenizerConfig, corpus: Corpus, progress: bool = True) -> TextTokenizer:
    if cfg.kind == "t5":
        return load_t5_tokenizer(cfg.name)
    if cfg.kind == "file":
        assert cfg.path is not None
        return load_tokenizer(Path(cfg.path))
    n = corpus.count("train")
    if cfg.train_max_documents is not None:
        n = min(n, cfg.train_max_documents) if n is not None else cfg.train_max_documents
    docs = tqdm(
        take(corpus.documents("train"), cfg.train_max_documents),
        total=n,
        desc="tokenizer: reading train documents",
        unit="doc",
        disable=not progress,
    )
    return train_bpe(docs, cfg.vocab_size, cfg.min_frequency, length=n)


def _encoded(
    tok: TextTokenizer, docs: Iterable[str], total: int | None, desc: str, progress: bool
) -> Iterator[list[int]]:
    bar = tqdm(total=total, desc=desc, unit="doc", disable=not progress)
    batch: list[str] = []
    for doc in docs:
        batch.append(doc)
        if len(batch) == ENCODE_BATCH:
            yield from tok.encode_batch(batch)
            bar.update(len(batch))
            batch = []
    if batch:
        yield from tok.encode_batch(batch)
        bar.update(len(batch))
    bar.close()


def prepare(config: Mapping[str, Any] | PrepareConfig | None, out_dir: Path, progress: bool = True) -> dict[str, Any]:
    """Run corpus → tokenizer → shards into ``out_dir``; return the ``meta.json`` contents."""
    cfg = parse_config(config)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    corpus = build_corpus(cfg.corpus)
    tok = build_tokenizer(cfg.tokenizer, corpus, progress)
    if tok.vocab_size > MAX_VOCAB:
        raise ValueError(f"tokenizer has {tok.vocab_size} ids: uint16 shards hold at most {MAX_VOCAB}")
    tok_path = tok.save(out_dir / "tokenizer.json")
    splits = {
        split: _encoded(tok, corpus.documents(split), corpus.count(split), f"encode {split}", progress)
        for split in SPLITS
    }
    extra = {
        "tokenizer": {
            "kind": tok.kind,
            "path": tok_path.name,  # relative to the folder holding meta.json
            "sha256": file_sha256(tok_path),
            "eod_token": tok.tokenizer.id_to_token(tok.eod_id),
            **({"name": cfg.tokenizer.name} if cfg.tokenizer.kind == "t5" else {}),
            **(
                {"vocab_size": cfg.tokenizer.vocab_size, "min_frequency": cfg.tokenizer.min_frequency}
                if cfg.tokenizer.kind == "bpe"
                else {}
            ),
        },
        "corpus": corpus.describe(),
        "config": dataclasses.asdict(cfg),
    }
    meta = write_shards(out_dir, splits, tok.vocab_size, tok.eod_id, extra)
    if progress:
        print(
            f"wrote {out_dir}: vocab {meta['vocab_size']}, "
            + ", ".join(f"{s} {meta['tokens'][s]:,} tokens / {meta['documents'][s]:,} docs" for s in SPLITS),
            file=sys.stderr,
        )
    return meta


def main(argv: list[str] | None = None) -> int:
    from fulcrum_core.config import ConfigError, load_mapping

    parser = argparse.ArgumentParser(prog="python -m seesaw_train.data.prepare", description=__doc__.split("\n")[0])
    parser.add_argument("--config", help="YAML/JSON file or JSON string (default: stdlib corpus, 4,096-id BPE)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    try:
        prepare(load_mapping(args.config), args.out, progress=not args.quiet)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
