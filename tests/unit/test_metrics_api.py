"""pyray.util.metrics without a cluster: Ray's argument checks and errors,
pickling, and what a process accumulates between two reports."""
import pickle
import warnings

import pytest

from pyray._private.metrics import recorder
from pyray.raylet.metrics_agent import UserMetric
from pyray.util.metrics import Counter, Gauge, Histogram


def _pending(name):
    """What this process recorded for `name` and has not reported yet."""
    with recorder.lock:
        return {k: v for defn, series in recorder.pending.items() if defn[0] == name
                for k, v in series.items()}


def test_names_and_tag_keys_are_checked():
    with pytest.raises(ValueError, match="Empty name is not allowed"):
        Counter("")
    with pytest.raises(TypeError, match="tag_keys should be a tuple type, got: <class 'list'>"):
        Counter("c", tag_keys=["a"])
    with pytest.raises(TypeError, match="Tag keys must be str, got <class 'int'>"):
        Gauge("g", tag_keys=(1,))
    with pytest.warns(UserWarning, match="Invalid metric name: 1bad"):
        bad = Counter("1bad")
    bad.inc()                               # discarded, as in Ray
    assert _pending("1bad") == {}


def test_tags_are_checked():
    c = Counter("unit_tags", tag_keys=("a", "b"))
    with pytest.raises(ValueError, match="Unrecognized tag key x."):
        c.set_default_tags({"x": "1"})
    with pytest.raises(TypeError, match="Tag values must be str, got <class 'int'>"):
        c.set_default_tags({"a": 1})
    with pytest.raises(ValueError, match=r"Missing value for tag key\(s\): a,b."):
        c.inc()
    with pytest.raises(TypeError, match="Tag values must be str"):
        c.inc(tags={"a": 1, "b": "2"})
    assert c.set_default_tags({"a": "x"}) is c
    with pytest.raises(ValueError, match=r"Missing value for tag key\(s\): b."):
        c.inc()
    c.inc(tags={"b": "y"})
    c.inc(2.5, tags={"a": "z", "b": "y"})   # given tags override the defaults
    assert _pending("unit_tags") == {("x", "y"): 1.0, ("z", "y"): 2.5}


def test_values_are_checked():
    c = Counter("unit_values")
    with pytest.raises(ValueError, match="value must be >0, got 0"):
        c.inc(0)
    with pytest.raises(TypeError, match="value must be int or float"):
        c.inc("1")
    g = Gauge("unit_gauge")
    g.set(None)                             # a no-op, as in Ray
    assert _pending("unit_gauge") == {}
    g.set(3)
    g.set(-1.5)
    assert _pending("unit_gauge") == {(): -1.5}
    with pytest.raises(TypeError, match="value must be int or float"):
        g.set("x")
    with pytest.raises(ValueError, match="boundaries argument should be provided"):
        Histogram("h")
    with pytest.raises(ValueError, match=r"Invalid `boundaries` argument at index 1"):
        Histogram("h", boundaries=[1, 0])


def test_histogram_buckets_and_info():
    h = Histogram("unit_hist", description="d", boundaries=[10, 1], tag_keys=("k",))
    for v in (0.5, 1, 3, 10, 11):
        h.observe(v, tags={"k": "v"})
    counts, total, n = _pending("unit_hist")[("v",)]
    assert counts == [2, 2, 1] and total == 25.5 and n == 5    # le=1, le=10, +Inf
    assert h.info == {"name": "unit_hist", "description": "d", "tag_keys": ("k",),
                      "default_tags": {}, "boundaries": [10, 1]}


def test_metrics_pickle_by_definition():
    c = pickle.loads(pickle.dumps(Counter("unit_p", "d", ("a",)).set_default_tags({"a": "1"})))
    assert c.info == {"name": "unit_p", "description": "d", "tag_keys": ("a",),
                      "default_tags": {}}
    h = pickle.loads(pickle.dumps(Histogram("unit_ph", boundaries=[1.0, 2.0])))
    assert h.boundaries == [1.0, 2.0] and isinstance(h, Histogram)
    assert isinstance(pickle.loads(pickle.dumps(Gauge("unit_pg"))), Gauge)


def test_node_merges_reports():
    c = UserMetric("counter", "", ("a",), ())
    c.merge({("x",): 1.0})
    c.merge({("x",): 2.0, ("y",): 1.0})
    assert c.series == {("x",): 3.0, ("y",): 1.0}
    g = UserMetric("gauge", "", (), ())
    g.merge({(): 5.0})
    g.merge({(): 2.0})
    assert g.series == {(): 2.0}
    h = UserMetric("histogram", "", (), (1.0,))
    h.merge({(): ([1, 0], 0.5, 1)})
    h.merge({(): ([0, 2], 6.0, 2)})
    assert h.series == {(): [[1, 2], 6.5, 3]}
    assert h.same_definition("histogram", (), (1.0,))
    assert not h.same_definition("histogram", (), (2.0,))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Counter("fine_name:with_colon")
