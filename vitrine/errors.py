"""Errors a user can act on. The CLI prints their message and exits 2; the server maps
them to gRPC statuses. Anything else is a bug and is logged with its traceback."""


class VitrineError(Exception):
    """Base class: the message says what went wrong and how to fix it."""
