"""Token shards: one flat uint16 file per split plus ``meta.json``, read back through memmaps.

Layout of a prepared folder::

    train.bin   little-endian uint16 token ids, documents back to back, each followed by the
    val.bin     end-of-document id (no padding, no header; length = file size / 2)
    meta.json   {"format": 1, "dtype": "uint16", "vocab_size", "eod_id", "tokens": {split: n},
                 "documents": {split: n}, "files": {"train.bin": {"tokens", "bytes", "sha256"}, …},
                 "tokenizer": {…}, "corpus": {…}}

Writing is crash-safe: each ``.bin`` is streamed into a temporary file in the same folder (hashing
as it goes), and renamed into place only when complete; ``meta.json`` is written last the same
way. A folder therefore holds either the previous complete files or the new ones, never a half
file under a final name; a ``meta.json`` always describes complete ``.bin`` files.

uint16 holds ids 0..65,535; a vocabulary above 65,535 ids is refused (:data:`MAX_VOCAB`).

Reading: :class:`TokenShard` memory-maps a ``.bin``; ``window(start, length)`` copies a slice to
int64 (the dtype ``torch.nn.functional.cross_entropy`` wants for targets). :func:`input_target`
cuts a window of ``seq_len + 1`` tokens into (input = window[:-1], target = window[1:]).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1
DTYPE = np.dtype("<u2")
MAX_VOCAB = 65_535
SPLIT_FILES = {"train": "train.bin", "val": "val.bin"}


def check_vocab(vocab_size: int) -> None:
    """Refuse vocabularies that uint16 shards cannot hold (> 65,535 ids)."""
    if not 1 <= vocab_size <= MAX_VOCAB:
        raise ValueError(f"vocab_size {vocab_size} cannot be stored as uint16 tokens (allowed: 1..{MAX_VOCAB})")


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ShardWriter:
    """Stream token documents into ``<name>.bin`` via a temporary file; ``close()`` renames it.

    Use as a context manager: on an exception the temporary file is deleted and nothing is renamed.
    """

    def __init__(self, path: Path, vocab_size: int, eod_id: int) -> None:
        check_vocab(vocab_size)
        if not 0 <= eod_id < vocab_size:
            raise ValueError(f"eod_id {eod_id} outside the vocabulary [0, {vocab_size})")
        self.path = Path(path)
        self.vocab_size = vocab_size
        self.eod_id = eod_id
        self.tokens = 0
        self.documents = 0
        self._sha = hashlib.sha256()
        fd, self._tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        self._fh = os.fdopen(fd, "wb")

    def add(self, ids: Sequence[int] | np.ndarray) -> None:
        """Append one document's ids followed by the end-of-document id."""
        arr = np.empty(len(ids) + 1, dtype=np.int64)
        arr[:-1] = ids
        arr[-1] = self.eod_id
        if arr.size > 1 and (arr.min() < 0 or arr.max() >= self.vocab_size):
            raise ValueError(f"token id outside [0, {self.vocab_size}) in document {self.documents}")
        data = arr.astype(DTYPE).tobytes()
        self._fh.write(data)
        self._sha.update(data)
        self.tokens += arr.size
        self.documents += 1

    def close(self) -> dict[str, Any]:
        """Flush, rename into place, and return ``{"tokens", "documents", "bytes", "sha256"}``."""
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self._tmp, self.path)
        return {
            "tokens": self.tokens,
            "documents": self.documents,
            "bytes": self.tokens * DTYPE.itemsize,
            "sha256": self._sha.hexdigest(),
        }

    def abort(self) -> None:
        if not self._fh.closed:
            self._fh.close()
        Path(self._tmp).unlink(missing_ok=True)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is not None:
            self.abort()


def write_shards(
    out_dir: Path,
    splits: dict[str, Iterable[Sequence[int]]],
    vocab_size: int,
    eod_id: int,
    extra_meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``{split}.bin`` for each split (documents of ids; eod appended) and then ``meta.json``.

    Returns the meta dictionary. ``extra_meta`` (tokenizer, corpus descriptions) is merged in.
    """
    check_vocab(vocab_size)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict[str, Any]] = {}
    for split, docs in splits.items():
        if split not in SPLIT_FILES:
            raise ValueError(f"unknown split {split!r} (allowed: {', '.join(SPLIT_FILES)})")
        with ShardWriter(out_dir / SPLIT_FILES[split], vocab_size, eod_id) as writer:
            for ids in docs:
                writer.add(ids)
            files[SPLIT_FILES[split]] = writer.close()
    meta = {
        "format": FORMAT_VERSION,
        "dtype": "uint16",
        "vocab_size": int(vocab_size),
        "eod_id": int(eod_id),
        "tokens": {s: files[f]["tokens"] for s, f in SPLIT_FILES.items() if f in files},
        "documents": {s: files[f]["documents"] for s, f in SPLIT_FILES.items() if f in files},
        "files": {name: {k: v for k, v in info.items() if k != "documents"} for name, info in files.items()},
        **(extra_meta or {}),
    }
    _atomic_write_text(out_dir / "meta.json", json.dumps(meta, indent=2, sort_keys=False) + "\n")
    return meta


def load_meta(out_dir: Path) -> dict[str, Any]:
    path = Path(out_dir) / "meta.json"
    if not path.is_file():
        raise FileNotFoundError(f"no meta.json in {out_dir}: prepare the data first")
    meta = json.loads(path.read_text())
    if meta.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path}: format {meta.get('format')!r}, this code reads format {FORMAT_VERSION}")
    return meta


def verify_shards(out_dir: Path) -> dict[str, Any]:
    """Check every ``.bin`` named in ``meta.json`` against its recorded size and SHA-256; return the meta."""
    from .tokenizer import file_sha256

    meta = load_meta(out_dir)
    for name, info in meta["files"].items():
        path = Path(out_dir) / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} named in meta.json is missing")
        if path.stat().st_size != info["bytes"]:
            raise ValueError(f"{path}: {path.stat().st_size} bytes, meta.json says {info['bytes']}")
        if file_sha256(path) != info["sha256"]:
            raise ValueError(f"{path}: SHA-256 differs from meta.json")
    return meta


class TokenShard:
    """Read-only memmap view of one ``.bin`` token file.

    ``len(shard)`` is the number of tokens, ``shard.tokens`` the uint16 memmap, ``window(start,
    length)`` an int64 copy of ``tokens[start:start + length]`` (bounds-checked).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"token file not found: {self.path}")
        size = self.path.stat().st_size
        if size % DTYPE.itemsize:
            raise ValueError(f"{self.path}: {size} bytes is not a whole number of uint16 tokens")
        # numpy cannot memory-map an empty file
        self.tokens = np.memmap(self.path, dtype=DTYPE, mode="r") if size else np.zeros(0, dtype=DTYPE)

    @classmethod
    def open(cls, out_dir: Path, split: str) -> TokenShard:
        if split not in SPLIT_FILES:
            raise ValueError(f"unknown split {split!r} (allowed: {', '.join(SPLIT_FILES)})")
        return cls(Path(out_dir) / SPLIT_FILES[split])

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    def window(self, start: int, length: int) -> np.ndarray:
        if length < 0 or start < 0 or start + length > len(self):
            raise IndexError(f"window [{start}, {start + length}) outside the shard's {len(self)} tokens")
        return np.asarray(self.tokens[start : start + length], dtype=np.int64)

    def num_windows(self, seq_len: int) -> int:
        """Number of valid window starts for ``seq_len + 1``-token windows (0 if the shard is too short)."""
        return max(0, len(self) - seq_len)

    def __repr__(self) -> str:
        return f"TokenShard({str(self.path)!r}, tokens={len(self)})"


def input_target(shard: TokenShard, start: int, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(input, target) of one window: ``w = shard.window(start, seq_len + 1)``; ``(w[:-1], w[1:])``."""
    w = shard.window(start, seq_len + 1)
    return w[:-1], w[1:]


def batch_input_target(shard: TokenShard, starts: Sequence[int], seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Stacked windows: arrays of shape (len(starts), seq_len), int64, target shifted by one."""
    w = np.stack([shard.window(int(s), seq_len + 1) for s in starts]) if len(starts) else np.zeros((0, seq_len + 1))
    w = w.astype(np.int64, copy=False)
    return w[:, :-1], w[:, 1:]
