"""Storage addressed by fsspec URIs (a local folder or s3://bucket/prefix), with atomic writes.

The bottom layer of genpipe: it imports neither Ray nor MLflow nor any other genpipe package, so
data_prep, models and pipelines can all stand on it.
"""

from storage.files import (
    create_exclusive,
    exists,
    local_copy,
    read_bytes,
    read_json,
    write_bytes_atomic,
    write_json_atomic,
)
from storage.ray_paths import ray_storage, storage_uri
from storage.secrets import has_credentials, redact
from storage.uris import filesystem, is_local, join, normalize

__all__ = [
    "create_exclusive",
    "exists",
    "filesystem",
    "has_credentials",
    "is_local",
    "join",
    "local_copy",
    "normalize",
    "ray_storage",
    "read_bytes",
    "read_json",
    "redact",
    "storage_uri",
    "write_bytes_atomic",
    "write_json_atomic",
]
