"""Corpus readers: documents as plain strings, split into train/val by a seeded, stable rule.

Three sources, one interface (:class:`Corpus`: ``documents(split)`` yields strings, ``count(split)``
gives the number of documents when it is known, ``describe()`` a JSON-able record for ``meta.json``):

- :class:`StdlibCorpus` — the running interpreter's standard-library source tree, a real text corpus
  present wherever Python is (DESIGN §5). Root ``sysconfig.get_paths()["stdlib"]``; every ``*.py``
  file below it except those under a ``site-packages`` or ``dist-packages`` folder (measured here:
  the stdlib alone is 1,790 files, 31.5 MB). Files are read as bytes and decoded as UTF-8 with
  ``errors="replace"`` (a few test files are not UTF-8); no newline translation. One file = one
  document; files are taken in sorted order of their POSIX path relative to the root.
- :class:`LocalTextCorpus` — any local glob. ``*.jsonl`` files hold one JSON object per line and the
  document is the value of a configurable field (default ``"text"``); any other file is one document.
- :class:`C4Corpus` — ``allenai/c4``, config ``en``, streamed through Hugging Face ``datasets``
  (imported lazily). It needs the network; offline or without ``datasets`` it raises
  :class:`CorpusUnavailable` at once, with what to install / that the network is needed. C4 has its
  own ``validation`` split, which is used as ``val``.

Split rule (:func:`split_assignment`): unit ``u`` (a file's relative path, or ``path#line`` for a
JSONL record) goes to ``val`` iff ``h(seed, u) < val_fraction``, where ``h`` is the first 8 bytes of
SHA-256 of ``f"{seed}:{u}"`` read as an integer and divided by 2⁶⁴ (uniform on [0, 1)). A unit's side
depends on nothing but its own name and the seed — not on Python's salted ``hash``, not on the other
files — so it is the same on every machine and stays put when files are added or removed. Only for
degenerate outcomes on tiny corpora (≥ 2 units, 0 < val_fraction < 1, but every unit on one side) the
unit with the smallest (or largest) ``h`` is moved, so that both sides are non-empty.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sysconfig
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

SPLITS = ("train", "val")
EXCLUDED_DIRS = frozenset({"site-packages", "dist-packages"})
OFFLINE_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


class CorpusUnavailable(RuntimeError):
    """A corpus (or tokenizer) cannot be reached: a missing package or no network."""


class Corpus(Protocol):
    def documents(self, split: str) -> Iterator[str]: ...

    def count(self, split: str) -> int | None: ...

    def describe(self) -> dict[str, Any]: ...


# --------------------------------------------------------------------------------------- split rule


def unit_hash(seed: int, unit: str) -> float:
    """h(seed, unit) ∈ [0, 1): first 8 bytes of sha256(f"{seed}:{unit}") / 2⁶⁴."""
    digest = hashlib.sha256(f"{seed}:{unit}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_assignment(units: Sequence[str], val_fraction: float, seed: int) -> dict[str, str]:
    """Map each unit to ``"train"`` or ``"val"`` by the seeded hash threshold (module docstring)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if len(set(units)) != len(units):
        raise ValueError("split units must be unique")
    h = {u: unit_hash(seed, u) for u in units}
    side = {u: ("val" if h[u] < val_fraction else "train") for u in units}
    if len(units) >= 2 and val_fraction > 0:
        n_val = sum(s == "val" for s in side.values())
        if n_val == 0:  # nothing fell below the threshold: the lowest hash goes to val
            side[min(units, key=h.__getitem__)] = "val"
        elif n_val == len(units):  # everything did: the highest hash stays in train
            side[max(units, key=h.__getitem__)] = "train"
    return side


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def read_text(path: Path) -> str:
    """Whole file as text: UTF-8 with undecodable bytes replaced by U+FFFD, no newline translation."""
    return path.read_bytes().decode("utf-8", errors="replace")


# ------------------------------------------------------------------------------------------ stdlib


def stdlib_root() -> Path:
    """The running interpreter's standard-library folder (the base interpreter's, also in a venv)."""
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(root: Path | None = None, max_files: int | None = None) -> list[str]:
    """Sorted relative POSIX paths of the ``*.py`` files under ``root``, site/dist-packages excluded.

    ``max_files`` keeps the first N of the sorted list (a deterministic slice for tests and ci).
    """
    root = stdlib_root() if root is None else Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"standard-library folder not found: {root}")
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in EXCLUDED_DIRS and d != "__pycache__"]
        rel_dir = Path(dirpath).relative_to(root)
        found.extend((rel_dir / name).as_posix() for name in filenames if name.endswith(".py"))
    found.sort()
    return found if max_files is None else found[:max_files]


class StdlibCorpus:
    """Python standard-library sources, one document per file, split by file."""

    def __init__(
        self, root: Path | None = None, val_fraction: float = 0.05, seed: int = 0, max_files: int | None = None
    ) -> None:
        self.root = stdlib_root() if root is None else Path(root)
        self.val_fraction = val_fraction
        self.seed = seed
        self.max_files = max_files
        self.files = stdlib_files(self.root, max_files)
        if not self.files:
            raise FileNotFoundError(f"no .py files under {self.root}")
        self.assignment = split_assignment(self.files, val_fraction, seed)

    def split_files(self, split: str) -> list[str]:
        _check_split(split)
        return [f for f in self.files if self.assignment[f] == split]

    def documents(self, split: str) -> Iterator[str]:
        for rel in self.split_files(split):
            yield read_text(self.root / rel)

    def count(self, split: str) -> int:
        return len(self.split_files(split))

    def describe(self) -> dict[str, Any]:
        import platform

        return {
            "kind": "stdlib",
            "root": str(self.root),
            "python": platform.python_version(),
            "files": len(self.files),
            "max_files": self.max_files,
            "val_fraction": self.val_fraction,
            "seed": self.seed,
            "documents": {s: self.count(s) for s in SPLITS},
            # a fingerprint of which file went where, so two preparations can be compared
            "split_sha256": hashlib.sha256(
                "\n".join(f"{self.assignment[f]} {f}" for f in self.files).encode()
            ).hexdigest(),
        }


# ------------------------------------------------------------------------------------- local files


def _glob_root(pattern: str) -> Path:
    """The longest leading part of ``pattern`` without glob characters (relative names start there)."""
    parts = Path(pattern).parts
    root: list[str] = []
    for part in parts:
        if any(c in part for c in "*?["):
            break
        root.append(part)
    if len(root) == len(parts):  # a plain file name: its folder
        root = root[:-1]
    return Path(*root) if root else Path(".")


class LocalTextCorpus:
    """Documents from a local glob: ``*.jsonl`` → one document per line (``text_field``); else per file.

    Split units: the file's path relative to the glob's root for plain files, ``"{path}#{line}"``
    (1-based line number) for JSONL records — a JSONL file often holds the whole corpus, so a split by
    file would leave one side empty. Blank JSONL lines are skipped; a line that is not a JSON object
    holding a string under ``text_field`` is an error naming the file and line.
    """

    def __init__(
        self,
        pattern: str,
        text_field: str = "text",
        val_fraction: float = 0.05,
        seed: int = 0,
        max_files: int | None = None,
    ) -> None:
        import glob

        self.pattern = str(pattern)
        self.text_field = text_field
        self.val_fraction = val_fraction
        self.seed = seed
        self.root = _glob_root(self.pattern)
        paths = sorted(Path(p) for p in glob.glob(self.pattern, recursive=True) if Path(p).is_file())
        if max_files is not None:
            paths = paths[:max_files]
        if not paths:
            raise FileNotFoundError(f"no files match {self.pattern!r}")
        self.paths = paths
        self.units: list[tuple[str, Path, int | None]] = []  # (unit name, file, JSONL line or None)
        for path in paths:
            rel = path.relative_to(self.root).as_posix() if path.is_relative_to(self.root) else path.as_posix()
            if self._is_jsonl(path):
                with path.open("rb") as fh:
                    for lineno, line in enumerate(fh, start=1):
                        if line.strip():
                            self.units.append((f"{rel}#{lineno}", path, lineno))
            else:
                self.units.append((rel, path, None))
        self.assignment = split_assignment([u for u, _, _ in self.units], val_fraction, seed)

    @staticmethod
    def _is_jsonl(path: Path) -> bool:
        return path.suffix.lower() == ".jsonl"

    def _record_text(self, path: Path, lineno: int, line: bytes) -> str:
        try:
            record = json.loads(line.decode("utf-8", errors="replace"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{lineno}: not valid JSON ({exc})") from exc
        if not isinstance(record, dict) or not isinstance(record.get(self.text_field), str):
            raise ValueError(f"{path}:{lineno}: expected a JSON object with a string field {self.text_field!r}")
        return record[self.text_field]

    def documents(self, split: str) -> Iterator[str]:
        _check_split(split)
        wanted: dict[Path, set[int | None]] = {}
        for unit, path, lineno in self.units:
            if self.assignment[unit] == split:
                wanted.setdefault(path, set()).add(lineno)
        for path in self.paths:  # sorted file order, then line order
            lines = wanted.get(path)
            if not lines:
                continue
            if not self._is_jsonl(path):
                yield read_text(path)
                continue
            with path.open("rb") as fh:
                for lineno, line in enumerate(fh, start=1):
                    if lineno in lines:
                        yield self._record_text(path, lineno, line)

    def count(self, split: str) -> int:
        _check_split(split)
        return sum(self.assignment[u] == split for u, _, _ in self.units)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "text",
            "pattern": self.pattern,
            "text_field": self.text_field,
            "files": len(self.paths),
            "val_fraction": self.val_fraction,
            "seed": self.seed,
            "documents": {s: self.count(s) for s in SPLITS},
        }


# ---------------------------------------------------------------------------------------------- C4


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def hub_offline() -> bool:
    """True when the environment asks Hugging Face libraries to stay offline."""
    return any(_env_true(name) for name in OFFLINE_ENV)


def check_hub_reachable(what: str, timeout: float = 5.0) -> None:
    """Raise :class:`CorpusUnavailable` unless the Hugging Face Hub answers a TCP connect in ``timeout`` s.

    Checks the offline variables first (no network touched then). The host is taken from
    ``HF_ENDPOINT`` when set (a mirror), else ``huggingface.co``.
    """
    if hub_offline():
        set_vars = ", ".join(n for n in OFFLINE_ENV if _env_true(n))
        raise CorpusUnavailable(
            f"{what} needs the network (Hugging Face Hub), but {set_vars} is set: unset it on a machine "
            "with internet access, or prepare the data elsewhere and copy the output folder here"
        )
    url = urllib.parse.urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise CorpusUnavailable(
            f"{what} needs the network, but {host}:{port} is unreachable ({exc}); run on a machine with "
            "internet access (or set HF_ENDPOINT to a reachable mirror)"
        ) from exc


class C4Corpus:
    """``allenai/c4`` (``en``) streamed with Hugging Face ``datasets``; ``val`` is C4's validation split.

    ``max_documents`` train documents are streamed (required: C4 ``en`` has ≈ 365 M); ``val_documents``
    from the validation split (default ``max(1, round(val_fraction · max_documents))``). The stream
    order is the dataset's own shard order, so the first N documents are deterministic.
    """

    DATASET = "allenai/c4"
    CONFIG = "en"
    HF_SPLIT = {"train": "train", "val": "validation"}

    def __init__(
        self,
        max_documents: int,
        val_documents: int | None = None,
        val_fraction: float = 0.05,
        timeout: float = 5.0,
    ) -> None:
        if max_documents < 1:
            raise ValueError(f"C4 needs max_documents >= 1, got {max_documents}")
        self.max_documents = max_documents
        self.val_documents = val_documents if val_documents is not None else max(1, round(val_fraction * max_documents))
        self.timeout = timeout
        self._datasets = self._import_datasets()

    def _import_datasets(self) -> Any:
        # order: offline variables (no import, no network), the package, then a short connect probe
        if hub_offline():
            check_hub_reachable("the C4 corpus (allenai/c4)", self.timeout)
        try:
            import datasets
        except ImportError as exc:
            raise CorpusUnavailable(
                "the C4 corpus needs the Hugging Face 'datasets' package: pip install 'datasets>=2.19' "
                "(and network access to the Hugging Face Hub)"
            ) from exc
        check_hub_reachable("the C4 corpus (allenai/c4)", self.timeout)
        return datasets

    def documents(self, split: str) -> Iterator[str]:
        _check_split(split)
        limit = self.max_documents if split == "train" else self.val_documents
        stream = self._datasets.load_dataset(self.DATASET, self.CONFIG, split=self.HF_SPLIT[split], streaming=True)
        for i, record in enumerate(stream):
            if i >= limit:
                break
            yield record["text"]

    def count(self, split: str) -> int:
        _check_split(split)
        return self.max_documents if split == "train" else self.val_documents

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "c4",
            "dataset": self.DATASET,
            "config": self.CONFIG,
            "splits": dict(self.HF_SPLIT),
            "documents": {s: self.count(s) for s in SPLITS},
            "datasets_version": getattr(self._datasets, "__version__", None),
        }


def take(docs: Iterable[str], n: int | None) -> Iterator[str]:
    """The first ``n`` documents (all when ``n`` is None)."""
    for i, doc in enumerate(docs):
        if n is not None and i >= n:
            return
        yield doc
