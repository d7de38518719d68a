"""Captions from class labels, in several phrasings, for text-to-image training on labelled images
(digits, image folders): "a handwritten seven", "the number 7", ...

The first phrasing is the one evaluation asks with, so "does 'a handwritten seven' give sevens?"
is measured on the words a user would type.
"""

from __future__ import annotations

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

PHRASINGS = (
    "a handwritten {word}",
    "the digit {word}",
    "a picture of the number {numeral}",
    "{word}",
    "a scanned {word}, written by hand",
    "an image of a {numeral}",
    "the number {word}, handwritten",
    "{numeral}",
)


def class_words(name: str) -> tuple[str, str]:
    """(word, numeral) for a class name: digits get both spellings; other names are themselves."""
    name = name.replace("_", " ").strip()
    if name.isdigit() and int(name) < len(NUMBER_WORDS):
        return NUMBER_WORDS[int(name)], name
    return name, name


def captions_for(class_name: str) -> list[str]:
    """Every phrasing of one class, the evaluation prompt first."""
    word, numeral = class_words(class_name)
    return [phrasing.format(word=word, numeral=numeral) for phrasing in PHRASINGS]


def evaluation_prompt(class_name: str) -> str:
    return captions_for(class_name)[0]
