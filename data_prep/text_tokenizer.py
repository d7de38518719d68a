"""Tokenizers for text datasets: the byte-level or BPE tokenizer of tokens/, trained here on the
train split only and read back from any storage."""

from __future__ import annotations

from collections.abc import Iterator

from data_prep.config import TokenizerConfig
from data_prep.errors import DataError
from storage import read_bytes
from tokens.text_tokenizer import END_OF_TEXT, TOKENIZER_FILE, TextTokenizer, TokenizerFileError

__all__ = ["TOKENIZER_FILE", "TextTokenizer", "load_tokenizer", "parse_tokenizer", "train_tokenizer"]


def parse_tokenizer(text: str, origin: str = TOKENIZER_FILE) -> TextTokenizer:
    """A tokenizer file's content; a DataError names `origin` when it is not one."""
    try:
        return TextTokenizer.from_json(text, origin)
    except TokenizerFileError as exc:
        raise DataError(str(exc)) from None


def load_tokenizer(uri: str) -> TextTokenizer:
    """The tokenizer saved at `uri` (a dataset's or a model folder's tokenizer.json, any storage)."""
    return parse_tokenizer(read_bytes(uri).decode(), uri)


def train_tokenizer(config: TokenizerConfig, texts: Iterator[str]) -> TextTokenizer:
    """The tokenizer the config asks for; BPE learns its merges from `texts`."""
    if config.kind == "byte":
        return TextTokenizer()
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=config.vocab_size,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    return TextTokenizer(bpe)
