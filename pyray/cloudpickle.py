"""``pyray.cloudpickle``: the cloudpickle pyray serializes functions and
classes with, under the name Ray code imports it by (``ray.cloudpickle``)."""
from cloudpickle import *  # noqa: F401,F403
from cloudpickle import CloudPickler, dump, dumps, load, loads  # noqa: F401
from cloudpickle import __version__  # noqa: F401

try:
    from cloudpickle import register_pickle_by_value, unregister_pickle_by_value  # noqa: F401
except ImportError:       # cloudpickle < 2
    pass

Pickler = CloudPickler
