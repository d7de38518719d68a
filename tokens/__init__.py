"""The text tokenizer a text model is trained and served with. It needs numpy (and Hugging Face
`tokenizers` for BPE) and nothing of genpipe, so a registered model carries it as its own code."""
