"""Modalities as plug-ins: each folder here owns one kind of data (its source configs and readers,
how its shards are built, what its manifest records); `registry.py` is the one list of them.

A new modality is a folder beside these and one line in `registry.MODALITIES`
(tests/data_prep/test_a_new_modality.py is the worked example)."""
