"""The application layer: the `vitrine` command line, the main job and the daily flows.

Dependencies run one way: `app` → `evaluation` → `serving` → `training` / `spark_jobs` →
`retrieval` / `ranking` → `vitrine` (the core: config, contracts, data, feature-store
access). Nothing imports upward; `tests/unit/test_layers.py` walks the imports to keep it so.
"""
