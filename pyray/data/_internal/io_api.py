"""Placeholder until the file readers and writers land."""


class WriteMixin:
    pass
