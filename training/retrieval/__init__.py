"""Retrieval training: the TFRS two-tower (settings, model, training, the `vitrine train retrieval` pipeline)."""
