"""prepare for text on a real local Ray: token blocks, per-file split, rejects, tokenizer, parquet."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_prep.config import DataConfig
from data_prep.errors import DataError
from data_prep.prepare import fingerprint, prepare
from data_prep.readers import read_tokens
from data_prep.text_tokenizer import TextTokenizer
from storage import read_bytes

DOCUMENT = "def add_{i}(a, b):\n    '''Add two numbers.'''\n    return a + b + {i}\n\n"


def corpus(folder, documents: int = 12, bad: int = 1):
    folder.mkdir()
    for i in range(documents):
        (folder / f"module_{i}.py").write_text(DOCUMENT.format(i=i) * 20)
    for i in range(bad):
        (folder / f"latin_{i}.py").write_bytes("# caf\xe9\n".encode("latin-1"))
    return folder


def text_config(path: str, **extra) -> DataConfig:
    return DataConfig.model_validate(
        {
            "source": {"kind": "text_files", "path": path},
            "seq_len": 64,
            "val_fraction": 0.3,
            "max_reject_fraction": 0.1,
            **extra,
        }
    )


def test_text_files_become_token_blocks_with_rejects(ray_session, tmp_path):
    source = corpus(tmp_path / "corpus")
    manifest, cache_hit = prepare(text_config(f"{source}/*.py"), str(tmp_path / "store"))
    text = manifest.text
    assert not cache_hit and manifest.modality == "text" and text.vocab_size == 257
    assert text.documents["train"] + text.documents["val"] == 12 and min(text.documents.values()) > 0
    assert text.tokens == text.utf8_bytes  # bytes: one token per byte
    for split in ("train", "val"):
        blocks = read_tokens(manifest, split)
        assert blocks.shape == (manifest.splits[split].rows, 65) and blocks.dtype == np.int32
        assert text.tokens_in_blocks[split] == blocks.size
        assert text.tokens[split] - 64 * 4 <= blocks.size <= text.tokens[split] + text.documents[split]
    rejects = [json.loads(line) for line in read_bytes(manifest.rejects["uri"]).decode().splitlines()]
    assert rejects == [{"key": "latin_0.py", "reason": rejects[0]["reason"]}]
    assert rejects[0]["reason"].startswith("not UTF-8")
    tokenizer = TextTokenizer.from_json(read_bytes(manifest.tokenizer_uri).decode())
    assert "def add_" in tokenizer.decode(read_tokens(manifest, "train")[0])


def test_bpe_tokenizer_is_trained_on_train_only_and_in_the_fingerprint(ray_session, tmp_path):
    source = corpus(tmp_path / "corpus", bad=0)
    config = text_config(f"{source}/*.py", tokenizer={"kind": "bpe", "vocab_size": 320})
    assert fingerprint(config) != fingerprint(text_config(f"{source}/*.py"))
    manifest, _ = prepare(config, str(tmp_path / "store"))
    assert 257 < manifest.text.vocab_size <= 320
    assert manifest.text.tokens["train"] < manifest.text.utf8_bytes["train"] / 2  # merges compress the code
    (source / "module_0.py").write_text("changed")
    assert fingerprint(config) != manifest.fingerprint  # the corpus changed: a new dataset


def test_parquet_text_column_and_too_little_text(ray_session, tmp_path):
    table = pa.table({"body": [DOCUMENT.format(i=i) * 10 for i in range(20)] + [None]})
    pq.write_table(table, tmp_path / "docs.parquet")
    config = DataConfig.model_validate(
        {
            "source": {"kind": "parquet", "path": str(tmp_path / "docs.parquet"), "text_column": "body"},
            "seq_len": 32,
            "val_fraction": 0.3,
            "max_reject_fraction": 0.2,
        }
    )
    manifest, _ = prepare(config, str(tmp_path / "store"))
    assert manifest.rejects["count"] == 1 and sum(manifest.text.documents.values()) == 20
    too_long = config.model_copy(update={"seq_len": 100_000})
    with pytest.raises(DataError, match=r"data.seq_len: the (train|val) split has \d+ tokens, not enough"):
        prepare(too_long, str(tmp_path / "store"))


def test_python_stdlib_source_reads_the_running_pythons_library(ray_session, tmp_path):
    config = DataConfig.model_validate(
        {"source": {"kind": "python_stdlib", "include": "email/*.py"}, "seq_len": 64, "val_fraction": 0.3}
    )
    manifest, _ = prepare(config, str(tmp_path))
    assert manifest.source["files"] == sum(manifest.text.documents.values()) >= 10
    with pytest.raises(DataError, match="data.source.include: no files match"):
        prepare(DataConfig.model_validate({"source": {"kind": "python_stdlib", "include": "nope/*.py"}}), str(tmp_path))


@pytest.mark.parametrize("chunk", [1, 7, 100, 4096, 10**6])
def test_chunks_of_a_large_file_hold_every_line_once(tmp_path, chunk):
    from data_prep.modalities.text.sources import read_lines_in

    text = "".join(f"line {i} {'é' * (i % 5)}\n" for i in range(300)) + "no newline at the end"
    path = tmp_path / "big.txt"
    path.write_text(text, encoding="utf-8")
    size = path.stat().st_size
    with path.open("rb") as handle:
        pieces = [read_lines_in(handle, start, start + chunk) for start in range(0, size, chunk)]
    assert b"".join(pieces).decode("utf-8") == text
    held = [piece for piece in pieces if piece]
    assert all(piece.endswith(b"\n") for piece in held[:-1])  # cut at line ends only


def test_a_large_file_is_read_in_chunks_and_bpe_learns_from_a_bounded_sample(ray_session, tmp_path):
    source = tmp_path / "corpus"
    source.mkdir()
    (source / "big.py").write_text(DOCUMENT.format(i=0) * 3000)  # 198 KB: 10 chunks of 0.02 MB
    config = text_config(f"{source}/*.py", tokenizer={"kind": "bpe", "vocab_size": 300, "sample_mb": 0.05})
    config.source.chunk_mb = 0.02
    manifest, _ = prepare(config, str(tmp_path / "store"))
    text = manifest.text
    assert text.documents["train"] + text.documents["val"] == 10
    assert text.utf8_bytes["train"] + text.utf8_bytes["val"] == 198_000  # every line once
    sample = text.tokenizer_sample
    assert sample["sample_mb"] == 0.05 and 1 <= sample["documents"] < text.documents["train"]
    assert sample["utf8_bytes"] <= 0.05e6


def test_shards_are_sized_by_bytes_unless_a_count_is_given(ray_session, tmp_path):
    from data_prep.config import DataConfig as Images

    by_size, _ = prepare(Images(shard_mb=0.1), str(tmp_path / "a"))  # 1,426 images x 256 bytes decoded
    assert len(by_size.splits["train"].shards) == 4
    assert all(shard.rows * (256 + 8) <= 0.1 * 2**20 for shard in by_size.splits["train"].shards)
    assert len(by_size.splits["val"].shards) == 1
    counted, _ = prepare(Images(num_shards=3), str(tmp_path / "b"))
    assert len(counted.splits["train"].shards) == 3
