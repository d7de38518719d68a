"""Sources -> transforms -> Parquet shards + manifest.json, and the readers training uses."""
