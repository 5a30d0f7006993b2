"""One module per source format; `store.ingest.import_path` picks one."""
