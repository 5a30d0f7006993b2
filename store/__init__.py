"""Persistence: immutable dataset versions on disk, artifacts, and the metadata database."""
