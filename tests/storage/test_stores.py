"""Storage messages name the store a URI is on (its driver, credentials, endpoint), not S3's."""

from __future__ import annotations

import importlib.util

import pytest

from pipelines.workflow import preflight
from storage.stores import AZURE, GCS, S3, missing_driver, store_of


@pytest.mark.parametrize(
    ("uri", "store"),
    [("s3://b/x", S3), ("s3a://b/x", S3), ("gs://b/x", GCS), ("gcs://b/x", GCS), ("abfs://c/x", AZURE)],
)
def test_each_scheme_has_its_store(uri, store):
    assert store_of(uri) is store


def test_a_store_whose_driver_is_not_installed_is_named_with_the_extra_that_installs_it():
    expected = None if importlib.util.find_spec("gcsfs") else "Google Cloud Storage needs the gcsfs package: "
    found = missing_driver("gs://bucket/runs")
    assert found == expected or (expected and found.startswith(expected) and "genpipe[gcs]" in found)
    with pytest.raises(preflight.PreflightError, match=r"^storage: nosuch://b/x: no fsspec filesystem for nosuch://"):
        preflight.check_storage("nosuch://b/x")


@pytest.mark.skipif(importlib.util.find_spec("gcsfs") is not None, reason="gcsfs is installed here")
def test_a_run_on_gcs_without_gcsfs_exits_2_before_anything_starts(capsys):
    from pipelines import cli

    assert cli.main(["run", "quickstart", "--storage", "gs://bucket/runs"]) == 2
    assert capsys.readouterr().err.startswith("storage: gs://bucket/runs: Google Cloud Storage needs the gcsfs package")
