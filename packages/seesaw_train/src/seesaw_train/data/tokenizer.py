"""Tokenizers: a byte-level BPE trained here with Hugging Face ``tokenizers``, or T5's by name.

:class:`TextTokenizer` wraps a ``tokenizers.Tokenizer`` with the id of the end-of-document token. Every
document is encoded *without* the tokenizer's own special tokens (``add_special_tokens=False``) and
then the end-of-document id is appended by the shard writer, so both kinds behave alike.

- Byte-level BPE (:func:`train_bpe`): pre-tokenizer ``ByteLevel(add_prefix_space=False)`` (bytes
  mapped to 256 printable characters, GPT-2's regex split), decoder ``ByteLevel``, the full 256-byte
  initial alphabet (so any UTF-8 input is encodable with no unknown token), and one special token
  ``<|endoftext|>`` (id 0). ``vocab_size`` counts the alphabet, the special token and the merges.
  ``decode(encode(s)) == s`` holds for every string ``s``.
- T5 (:func:`load_t5_tokenizer`): the SentencePiece unigram vocabulary of ``google-t5/t5-base``
  (32,100 ids: 32,000 pieces + 100 sentinel ids; the T5 model pads its embedding to 32,128), loaded from
  the Hub's ``tokenizer.json`` through ``huggingface_hub`` (lazy import; from the local cache when
  present; otherwise a short connect probe first, and a clear error offline). End-of-document is
  ``</s>`` (id 1). Its normaliser is lossy (whitespace runs), so no exact round trip is promised.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from .corpus import CorpusUnavailable, check_hub_reachable, hub_offline

EOD_TOKEN = "<|endoftext|>"
T5_NAME = "google-t5/t5-base"
T5_EOD = "</s>"
UINT16_MAX_VOCAB = 65_535


@dataclass
class TextTokenizer:
    """A ``tokenizers.Tokenizer`` plus the id appended after every document."""

    tokenizer: Tokenizer
    eod_id: int
    kind: str = "bpe"

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        """Ids of ``text`` without any special token (no end-of-document)."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def save(self, path: Path) -> Path:
        """Write ``tokenizer.json`` atomically (temp file in the same folder, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            self.tokenizer.save(tmp)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path


def train_bpe(
    texts: Iterable[str],
    vocab_size: int,
    min_frequency: int = 2,
    length: int | None = None,
    show_progress: bool = False,
) -> TextTokenizer:
    """Train a byte-level BPE of ``vocab_size`` ids (alphabet 256 + ``<|endoftext|>`` + merges).

    ``vocab_size`` must leave room for at least one merge and fit uint16 shards (≤ 65,535). The
    trainer is deterministic for a given input order (ties broken by the library's pair ordering).
    """
    if not 258 <= vocab_size <= UINT16_MAX_VOCAB:
        raise ValueError(f"vocab_size must be in [258, {UINT16_MAX_VOCAB}] for a byte-level BPE, got {vocab_size}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=show_progress,
    )
    tok.train_from_iterator(_nonempty(texts), trainer=trainer, length=length)
    eod = tok.token_to_id(EOD_TOKEN)
    assert eod is not None
    return TextTokenizer(tok, eod, kind="bpe")


def _nonempty(texts: Iterable[str]) -> Iterator[str]:
    return (t for t in texts if t)


def load_tokenizer(path: Path, eod_token: str | None = None) -> TextTokenizer:
    """Load a ``tokenizer.json``; the end-of-document token is ``<|endoftext|>`` or ``</s>`` (T5)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer file not found: {path}")
    tok = Tokenizer.from_file(str(path))
    for name in [eod_token] if eod_token else [EOD_TOKEN, T5_EOD]:
        eod = tok.token_to_id(name)
        if eod is not None:
            kind = {EOD_TOKEN: "bpe", T5_EOD: "t5"}.get(name, "file")
            return TextTokenizer(tok, eod, kind=kind)
    raise ValueError(f"{path}: no end-of-document token ({eod_token or EOD_TOKEN + ' or ' + T5_EOD}) in the vocabulary")


def load_t5_tokenizer(name: str = T5_NAME, cache_dir: Path | None = None, timeout: float = 5.0) -> TextTokenizer:
    """T5's tokenizer from the Hugging Face Hub (``tokenizer.json``), cache first; clear error offline."""
    try:
        from huggingface_hub import hf_hub_download, try_to_load_from_cache
    except ImportError as exc:
        raise CorpusUnavailable(
            "the T5 tokenizer needs the 'huggingface_hub' package: pip install 'huggingface_hub>=0.23'"
        ) from exc
    cached = try_to_load_from_cache(name, "tokenizer.json", cache_dir=cache_dir)
    if isinstance(cached, str) and Path(cached).is_file():
        path = cached
    else:
        if hub_offline():
            check_hub_reachable(f"the tokenizer {name!r} (not in the local cache)", timeout)
        check_hub_reachable(f"the tokenizer {name!r}", timeout)
        path = hf_hub_download(name, "tokenizer.json", cache_dir=cache_dir)
    tok = Tokenizer.from_file(path)
    eod = tok.token_to_id(T5_EOD)
    if eod is None:
        raise ValueError(f"{name}: tokenizer has no {T5_EOD!r} token")
    return TextTokenizer(tok, eod, kind="t5")


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
