"""The cluster path: Ray Jobs (submit, follow, stop) and a local cluster on 127.0.0.1."""
