"""Functions the pool tests run in pool actors (an importable module, so the
actors share its globals with the initializer)."""
import os
import time

MARK = None


def square_pid(x):
    return x * x, os.getpid()


def set_mark(value, path=None):
    global MARK
    MARK = (value, os.getpid())
    if path:
        with open(os.path.join(path, f"init-{os.getpid()}"), "w"):
            pass


def get_mark(_):
    return MARK


def fail_on_three(x):
    if x == 3:
        raise KeyError("three", x)
    return x


def add(a, b):
    return a + b


def sleep_then(x, seconds):
    time.sleep(seconds)
    return x


class Unpicklable(Exception):
    def __reduce__(self):
        raise TypeError("no")


def raise_unpicklable(_):
    raise Unpicklable("custom")


def bad_initializer():
    raise RuntimeError("initializer failed")
