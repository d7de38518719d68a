"""The object stores genpipe reaches through fsspec, and what to tell a user about each: the
driver package (and genpipe's extra that installs it), where its credentials come from, how another
endpoint (an emulator, MinIO) is named. Messages about storage name these, not S3's by default."""

from __future__ import annotations

from dataclasses import dataclass

import fsspec


@dataclass(frozen=True)
class Store:
    name: str
    driver: str  # the fsspec implementation's package
    extra: str | None  # `pip install 'genpipe[extra]'` installs the driver (None: always installed)
    credentials: str
    endpoint: str


S3 = Store(
    "S3", "s3fs", None, "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE", "the endpoint (AWS_ENDPOINT_URL)"
)
GCS = Store(
    "Google Cloud Storage",
    "gcsfs",
    "gcs",
    "GOOGLE_APPLICATION_CREDENTIALS or `gcloud auth application-default login`",
    "the endpoint (STORAGE_EMULATOR_HOST for an emulator)",
)
AZURE = Store(
    "Azure Blob Storage",
    "adlfs",
    "azure",
    "AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_ACCOUNT_KEY "
    "or a service principal (AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_CLIENT_SECRET)",
    "the account (its connection string's BlobEndpoint)",
)
STORES = {"s3": S3, "s3a": S3, "gs": GCS, "gcs": GCS, "az": AZURE, "abfs": AZURE, "abfss": AZURE}
OTHER = Store("this store", "its fsspec driver", None, "its credentials", "its endpoint")


def scheme(uri: str) -> str:
    return uri.split("://", 1)[0].lower() if "://" in uri else "file"


def store_of(uri: str) -> Store:
    return STORES.get(scheme(uri), OTHER)


def missing_driver(uri: str) -> str | None:
    """Why `uri` cannot be opened here (its driver is not installed, or fsspec knows no such
    scheme), or None."""
    try:
        fsspec.get_filesystem_class(scheme(uri))
    except ImportError:
        store = store_of(uri)
        fix = f"pip install 'genpipe[{store.extra}]'" if store.extra else f"pip install {store.driver}"
        return f"{store.name} needs the {store.driver} package: {fix}"
    except ValueError:
        return f"no fsspec filesystem for {scheme(uri)}:// (s3://, gs://, abfs:// and the other fsspec schemes)"
    return None
