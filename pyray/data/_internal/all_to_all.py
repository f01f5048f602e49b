"""Placeholder until the all-to-all operations (sort, shuffle, groupby, ...) land."""


class AllToAllMixin:
    pass
