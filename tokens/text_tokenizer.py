"""Byte-level (256 bytes + end-of-text) or BPE tokenizers, saved as one JSON file.

BPE is the Hugging Face `tokenizers` library's byte-level BPE (trained by data_prep on the train
split only; nothing is downloaded). The file lives beside the shards and later beside the model,
so a registered model carries the exact tokenizer it was trained with.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

TOKENIZER_FILE = "tokenizer.json"
END_OF_TEXT = "<|endoftext|>"
BYTE_KIND = {"genpipe_tokenizer": "byte"}


class TokenizerFileError(ValueError):
    """A tokenizer file that cannot be read; the message names it."""


class TextTokenizer:
    """encode/decode plus the id that separates documents."""

    def __init__(self, bpe=None):
        self._bpe = bpe  # a tokenizers.Tokenizer, or None for bytes

    @property
    def vocab_size(self) -> int:
        return 257 if self._bpe is None else self._bpe.get_vocab_size()

    @property
    def eot_id(self) -> int:
        return 256 if self._bpe is None else self._bpe.token_to_id(END_OF_TEXT)

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8")) if self._bpe is None else self._bpe.encode(text).ids

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        """Each text's ids as an int32 array (bytes stay a byte buffer: no Python int per byte)."""
        if self._bpe is None:
            return [np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int32) for text in texts]
        return [np.asarray(encoding.ids, dtype=np.int32) for encoding in self._bpe.encode_batch(texts)]

    def decode(self, ids: Iterable[int]) -> str:
        ids = [int(i) for i in ids if int(i) != self.eot_id]
        if self._bpe is None:
            return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")
        return self._bpe.decode(ids)

    def to_json(self) -> str:
        return json.dumps(BYTE_KIND) if self._bpe is None else self._bpe.to_str()

    @classmethod
    def read(cls, path: str | Path) -> TextTokenizer:
        """The tokenizer in a local file (a model folder's tokenizer.json)."""
        return cls.from_json(Path(path).read_text(), str(path))

    @classmethod
    def from_json(cls, text: str, origin: str = TOKENIZER_FILE) -> TextTokenizer:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TokenizerFileError(f"{origin}: not a tokenizer file: {exc}") from None
        if data == BYTE_KIND:
            return cls()
        from tokenizers import Tokenizer

        try:
            return cls(Tokenizer.from_str(text))
        except Exception as exc:  # the library's own message says what is wrong
            raise TokenizerFileError(f"{origin}: not a tokenizer file: {exc}") from None
