"""Tests of seesaw_train.data: corpus readers and split, tokenizer, shards, prepare, offline errors.

No test touches the network: C4 and the T5 tokenizer are exercised only on their offline paths.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from fulcrum_core.config import ConfigError
from seesaw_train.data import (
    C4Corpus,
    CorpusUnavailable,
    LocalTextCorpus,
    StdlibCorpus,
    TokenShard,
    batch_input_target,
    input_target,
    load_meta,
    load_t5_tokenizer,
    load_tokenizer,
    split_assignment,
    stdlib_files,
    train_bpe,
    verify_shards,
    write_shards,
)
from seesaw_train.data.prepare import prepare

STDLIB_SLICE = 30  # files: keeps the stdlib tests to a couple of seconds


def fake_corpus(root: Path) -> Path:
    """A few text files (one not UTF-8) and a JSONL file under ``root``; returns ``root``."""
    (root / "docs" / "sub").mkdir(parents=True)
    for i in range(6):
        (root / "docs" / f"note{i}.txt").write_text(f"def f{i}(x):\n    return x * {i}  # note {i}\n" * (i + 2))
    (root / "docs" / "sub" / "latin1.txt").write_bytes("caf\xe9 na\xefve\r\n".encode("latin-1"))
    records = [{"text": f"record {i}: the quick brown fox {'jumps ' * i}", "id": i} for i in range(20)]
    (root / "docs" / "data.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n\n")
    return root


# ------------------------------------------------------------------------------------------- corpus


def test_stdlib_files_exclude_site_and_dist_packages(tmp_path):
    for rel in ["a.py", "pkg/b.py", "pkg/readme.txt", "site-packages/x.py", "pkg/dist-packages/y.py"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x = 1\n")
    assert stdlib_files(tmp_path) == ["a.py", "pkg/b.py"]
    assert stdlib_files(tmp_path, max_files=1) == ["a.py"]


def test_real_stdlib_listing():
    files = stdlib_files()
    assert len(files) > 500  # 1,790 on CPython 3.11 (DESIGN §5)
    assert files == sorted(files)
    assert not [f for f in files if "site-packages" in f or "dist-packages" in f]
    assert "os.py" in files and "json/__init__.py" in files


def test_stdlib_split_is_disjoint_deterministic_and_stable():
    a = StdlibCorpus(max_files=STDLIB_SLICE, val_fraction=0.2, seed=1)
    b = StdlibCorpus(max_files=STDLIB_SLICE, val_fraction=0.2, seed=1)
    train, val = a.split_files("train"), a.split_files("val")
    assert train and val
    assert not set(train) & set(val)
    assert sorted(train + val) == a.files
    assert (train, val) == (b.split_files("train"), b.split_files("val"))
    assert a.describe()["split_sha256"] == b.describe()["split_sha256"]
    # another seed gives another split
    other = StdlibCorpus(max_files=STDLIB_SLICE, val_fraction=0.2, seed=2)
    assert other.split_files("val") != val
    # stable: a file's side does not depend on which other files are in the corpus
    full = split_assignment(a.files, 0.2, seed=1)
    part = split_assignment(a.files[::2], 0.2, seed=1)
    assert all(part[f] == full[f] for f in a.files[::2])
    # documents are the decoded files, in sorted order
    docs = list(a.documents("val"))
    assert docs[0] == (a.root / val[0]).read_bytes().decode("utf-8", errors="replace")


def test_split_fraction_and_degenerate_cases():
    units = [f"file{i}.py" for i in range(2000)]
    side = split_assignment(units, 0.1, seed=0)
    share = sum(s == "val" for s in side.values()) / len(units)
    assert abs(share - 0.1) < 0.03  # binomial sd = sqrt(0.09/2000) = 0.0067: 0.03 is 4.5 sd
    # tiny corpora still get both sides; fraction 0 keeps everything in train
    assert set(split_assignment(["a", "b"], 0.01, seed=0).values()) == {"train", "val"}
    assert set(split_assignment(units[:10], 0.0, seed=0).values()) == {"train"}
    with pytest.raises(ValueError):
        split_assignment(units, 1.0, seed=0)


def test_local_text_corpus_files_and_jsonl(tmp_path):
    fake_corpus(tmp_path)
    corpus = LocalTextCorpus(str(tmp_path / "docs" / "**" / "*"), val_fraction=0.3, seed=0)
    units = list(corpus.assignment)
    assert "sub/latin1.txt" in units and "data.jsonl#1" in units and "data.jsonl#20" in units
    assert "data.jsonl#21" not in units  # blank lines are skipped
    train, val = list(corpus.documents("train")), list(corpus.documents("val"))
    assert len(train) == corpus.count("train") and len(val) == corpus.count("val")
    assert len(train) + len(val) == 6 + 1 + 20
    assert train and val
    everything = train + val
    assert "caf\ufffd na\ufffdve\r\n" in everything  # latin-1 bytes replaced, CRLF kept
    assert sum(d.startswith("record ") for d in everything) == 20
    # JSONL only, other field name, and a clear error for a bad record
    (tmp_path / "other.jsonl").write_text('{"body": "hello"}\n{"body": 3}\n')
    bad = LocalTextCorpus(str(tmp_path / "other.jsonl"), text_field="body", val_fraction=0.0)
    with pytest.raises(ValueError, match=r"other.jsonl:2: .*'body'"):
        list(bad.documents("train"))
    with pytest.raises(FileNotFoundError):
        LocalTextCorpus(str(tmp_path / "nothing" / "*.txt"))


def test_c4_offline_gives_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(CorpusUnavailable, match="needs the network.*HF_DATASETS_OFFLINE"):
        C4Corpus(max_documents=10)


def test_c4_without_datasets_says_what_to_install(monkeypatch):
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setitem(sys.modules, "datasets", None)  # import fails before any network probe
    with pytest.raises(CorpusUnavailable, match="pip install 'datasets"):
        C4Corpus(max_documents=10)


def test_t5_tokenizer_offline_gives_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CorpusUnavailable, match="needs the network.*HF_HUB_OFFLINE"):
        load_t5_tokenizer(cache_dir=tmp_path)  # an empty cache: nothing to load locally


# ---------------------------------------------------------------------------------------- tokenizer


def test_bpe_round_trip_save_and_load(tmp_path):
    fake_corpus(tmp_path)
    texts = list(LocalTextCorpus(str(tmp_path / "docs" / "**" / "*"), val_fraction=0.0).documents("train"))
    tok = train_bpe(texts, vocab_size=300)
    assert tok.vocab_size == 300 and tok.eod_id == 0 and tok.tokenizer.id_to_token(0) == "<|endoftext|>"
    samples = texts + ["  leading spaces\tand tabs\r\n", "unicode: ∑ λ_i m_i — ✓ 日本語 🙂", "\ufffd", ""]
    for s in samples:
        assert tok.decode(tok.encode(s)) == s
    assert tok.encode("quick brown fox") != list(b"quick brown fox")  # merges were learnt
    assert tok.encode("<|endoftext|>") == [0]  # the special token is atomic
    path = tok.save(tmp_path / "out" / "tokenizer.json")
    loaded = load_tokenizer(path)
    assert loaded.eod_id == 0 and loaded.vocab_size == 300
    assert [loaded.encode(s) for s in samples] == [tok.encode(s) for s in samples]
    assert not [p for p in path.parent.iterdir() if p.name != "tokenizer.json"]  # no temp file left


def test_bpe_vocab_bounds():
    with pytest.raises(ValueError, match="vocab_size"):
        train_bpe(["abc"], vocab_size=70_000)


# ------------------------------------------------------------------------------------------- shards


def test_shards_round_trip_with_meta_sha256(tmp_path):
    docs = {"train": [[5, 6, 7], [], [8, 9]], "val": [[1, 2, 3, 4]]}
    meta = write_shards(tmp_path, docs, vocab_size=10, eod_id=0, extra_meta={"corpus": {"kind": "test"}})
    assert meta["tokens"] == {"train": 8, "val": 5}
    assert meta["documents"] == {"train": 3, "val": 1}
    assert load_meta(tmp_path) == meta and meta["corpus"] == {"kind": "test"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meta.json", "train.bin", "val.bin"]
    for name, info in meta["files"].items():
        data = (tmp_path / name).read_bytes()
        assert info["sha256"] == hashlib.sha256(data).hexdigest() and info["bytes"] == len(data)
    train = TokenShard.open(tmp_path, "train")
    assert len(train) == 8
    np.testing.assert_array_equal(train.window(0, 8), [5, 6, 7, 0, 0, 8, 9, 0])
    assert train.window(2, 3).dtype == np.int64
    x, y = input_target(train, 1, seq_len=4)
    np.testing.assert_array_equal(x, [6, 7, 0, 0])
    np.testing.assert_array_equal(y, [7, 0, 0, 8])
    xb, yb = batch_input_target(train, [0, 3], seq_len=4)
    assert xb.shape == yb.shape == (2, 4) and xb.dtype == np.int64
    np.testing.assert_array_equal(yb[1], [0, 8, 9, 0])
    assert train.num_windows(4) == 4
    with pytest.raises(IndexError):
        train.window(5, 4)
    verify_shards(tmp_path)
    # a flipped byte is caught
    raw = bytearray((tmp_path / "val.bin").read_bytes())
    raw[0] ^= 1
    (tmp_path / "val.bin").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="SHA-256"):
        verify_shards(tmp_path)


def test_shards_refuse_large_vocab_and_bad_ids(tmp_path):
    with pytest.raises(ValueError, match="uint16"):
        write_shards(tmp_path, {"train": [[1]]}, vocab_size=65_536, eod_id=0)
    with pytest.raises(ValueError, match="outside"):
        write_shards(tmp_path, {"train": [[1, 12]]}, vocab_size=10, eod_id=0)
    assert not list(tmp_path.iterdir())  # nothing half-written stays behind
    write_shards(tmp_path, {"train": [[65_534]]}, vocab_size=65_535, eod_id=0)  # the largest allowed
    np.testing.assert_array_equal(TokenShard(tmp_path / "train.bin").window(0, 2), [65_534, 0])


def test_interrupted_write_leaves_previous_files_intact(tmp_path):
    write_shards(tmp_path, {"train": [[1, 2]], "val": [[3]]}, vocab_size=10, eod_id=0)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def failing():
        yield [4, 5]
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        write_shards(tmp_path, {"train": failing(), "val": [[6]]}, vocab_size=10, eod_id=0)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


# ------------------------------------------------------------------------------------------ prepare


def test_prepare_local_text(tmp_path):
    fake_corpus(tmp_path)
    config = {
        "corpus": {"kind": "text", "pattern": str(tmp_path / "docs" / "**" / "*"), "val_fraction": 0.3},
        "tokenizer": {"vocab_size": 300},
    }
    meta = prepare(config, tmp_path / "out", progress=False)
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "tokenizer.json", "train.bin", "val.bin"]
    assert meta["vocab_size"] == 300 and meta["tokenizer"]["path"] == "tokenizer.json"
    assert meta["corpus"]["kind"] == "text" and meta["documents"]["train"] + meta["documents"]["val"] == 27
    verify_shards(out)
    tok = load_tokenizer(out / meta["tokenizer"]["path"])
    val = TokenShard.open(out, "val")
    assert len(val) == meta["tokens"]["val"] == os.path.getsize(out / "val.bin") // 2
    # decoding val.bin gives back the val documents, each followed by the end-of-document token
    corpus = LocalTextCorpus(config["corpus"]["pattern"], val_fraction=0.3)
    expected = "".join(doc + "<|endoftext|>" for doc in corpus.documents("val"))
    assert tok.decode(val.window(0, len(val))) == expected


def test_prepare_stdlib_slice_is_deterministic(tmp_path):
    config = {
        "corpus": {"kind": "stdlib", "max_files": STDLIB_SLICE, "val_fraction": 0.2},
        "tokenizer": {"vocab_size": 512},
    }
    a = prepare(config, tmp_path / "a", progress=False)
    b = prepare(config, tmp_path / "b", progress=False)
    assert a["files"] == b["files"] and a["tokenizer"]["sha256"] == b["tokenizer"]["sha256"]
    assert a["corpus"]["files"] == STDLIB_SLICE and a["tokens"]["train"] > 10 * a["documents"]["train"]
    assert a["tokens"]["val"] > 0


def test_prepare_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"prepare\.corpus\.kindd"):
        prepare({"corpus": {"kindd": "stdlib"}}, tmp_path)
    with pytest.raises(ConfigError, match="vocab_size"):
        prepare({"tokenizer": {"vocab_size": 70_000}}, tmp_path)
    with pytest.raises(ConfigError, match="pattern"):
        prepare({"corpus": {"kind": "text"}}, tmp_path)
