"""Tokenizers of the engine: a byte-level fallback and a ``tokenizer.json`` (Hugging Face ``tokenizers``).

- :class:`ByteTokenizer`: id = byte + 1 for the UTF-8 bytes of the text, id 0 = end of sequence. It needs
  no file and fits any vocabulary of ≥ 257 ids. A model's other ids (a random model samples them) have
  no byte; they are rendered as ``<id>`` so every generated token shows up as non-empty text.
- :class:`HFTokenizer`: a seesaw_train ``tokenizer.json`` (byte-level BPE with ``<|endoftext|>``, or T5's
  with ``</s>``), encoded without special tokens as seesaw_train does.

Streaming text: ``detokenizer()`` returns an object whose ``push(id)`` gives the text that id adds. A
multi-byte character split over several ids appears with its last id (the ones before give "").
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Protocol

EOD_NAMES = ("<|endoftext|>", "</s>")


class Detokenizer(Protocol):
    def push(self, token_id: int) -> str: ...


class Tokenizer(Protocol):
    eos_id: int
    vocab_size: int
    name: str

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...

    def detokenizer(self) -> Detokenizer: ...


class _ByteStream:
    def __init__(self, tok: ByteTokenizer) -> None:
        self.tok = tok
        self.dec = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        b = token_id - self.tok.offset
        if 0 <= b < 256:
            return self.dec.decode(bytes([b]))
        pending = self.dec.decode(b"", final=True)
        self.dec.reset()
        return pending + ("" if token_id == self.tok.eos_id else f"<{token_id}>")


class ByteTokenizer:
    """UTF-8 bytes as ids ``offset + byte``; ``eos_id`` 0."""

    name = "bytes"

    def __init__(self, offset: int = 1, eos_id: int = 0) -> None:
        self.offset, self.eos_id = int(offset), int(eos_id)
        self.vocab_size = self.offset + 256

    def encode(self, text: str) -> list[int]:
        return [self.offset + b for b in text.encode("utf-8")]

    def decode(self, ids: list[int]) -> str:
        stream = self.detokenizer()
        return "".join(stream.push(int(i)) for i in ids) + stream.dec.decode(b"", final=True)

    def detokenizer(self) -> _ByteStream:
        return _ByteStream(self)


class _PrefixStream:
    """Text of id n = decode(ids[:n+1]) minus the text already emitted; held back while it ends in U+FFFD
    (an incomplete byte sequence). Cost O(n) per id, fine for the engine's output lengths."""

    def __init__(self, tok: HFTokenizer) -> None:
        self.tok, self.ids, self.emitted = tok, [], ""

    def push(self, token_id: int) -> str:
        self.ids.append(int(token_id))
        text = self.tok.decode(self.ids)
        if text.endswith("\ufffd") or not text.startswith(self.emitted):
            return ""
        new, self.emitted = text[len(self.emitted) :], text
        return new


class HFTokenizer:
    """A ``tokenizer.json``; end of sequence = ``<|endoftext|>`` or ``</s>``."""

    def __init__(self, path: str | Path) -> None:
        try:
            from tokenizers import Tokenizer as _Tok
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise RuntimeError("--tokenizer needs the 'tokenizers' package (pip install tokenizers)") from exc
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer file not found: {path}")
        self.tok = _Tok.from_file(str(path))
        self.name = str(path)
        for name in EOD_NAMES:
            eos = self.tok.token_to_id(name)
            if eos is not None:
                self.eos_id = int(eos)
                break
        else:
            raise ValueError(f"{path}: no end-of-sequence token ({' or '.join(EOD_NAMES)}) in the vocabulary")
        self.vocab_size = int(self.tok.get_vocab_size(with_added_tokens=True))

    def encode(self, text: str) -> list[int]:
        return list(self.tok.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def detokenizer(self) -> _PrefixStream:
        return _PrefixStream(self)


def load_tokenizer(path: str | Path | None) -> ByteTokenizer | HFTokenizer:
    """``tokenizer.json`` at ``path``, or the byte-level fallback when ``path`` is None."""
    return ByteTokenizer() if path is None else HFTokenizer(path)
