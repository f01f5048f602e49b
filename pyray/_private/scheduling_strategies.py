"""Scheduling strategies, as in Ray.  On one node every strategy places work
on that node; across nodes (pyray.cluster_utils) the raylets honour them.

Defined here, below the public API, because the submit path
(pyray._private.remote_function, pyray._private.placement_group) needs them;
users import them from pyray.util.scheduling_strategies, which re-exports
these classes."""
from __future__ import annotations


class NodeAffinitySchedulingStrategy:
    def __init__(self, node_id, soft: bool, _spill_on_unavailable=False,
                 _fail_on_unavailable=False):
        if isinstance(node_id, bytes):
            node_id = node_id.hex()
        if not isinstance(node_id, str):
            raise ValueError(f"node_id must be a hex string, got {node_id!r}")
        self.node_id = node_id
        self.soft = bool(soft)
        self._spill_on_unavailable = _spill_on_unavailable
        self._fail_on_unavailable = _fail_on_unavailable

    def _key(self):
        return ("node", self.node_id, self.soft)

    def __repr__(self):
        return f"NodeAffinitySchedulingStrategy(node_id={self.node_id!r}, soft={self.soft})"


class PlacementGroupSchedulingStrategy:
    """Places a task or actor in bundle ``placement_group_bundle_index`` of
    a placement group (-1: any of its bundles).  With
    ``placement_group_capture_child_tasks=True`` the tasks and actors it
    starts without a strategy of their own join the same group.  Checked
    (index range, fit in the bundle) when the options are set."""

    def __init__(self, placement_group, placement_group_bundle_index: int = -1,
                 placement_group_capture_child_tasks=None):
        self.placement_group = placement_group
        self.placement_group_bundle_index = placement_group_bundle_index
        self.placement_group_capture_child_tasks = placement_group_capture_child_tasks

    def _key(self):
        pg_id = getattr(self.placement_group, "id", None)
        return ("pg", bytes(pg_id) if pg_id is not None else None,
                self.placement_group_bundle_index)

    def __repr__(self):
        return (f"PlacementGroupSchedulingStrategy({self.placement_group!r}, "
                f"placement_group_bundle_index={self.placement_group_bundle_index}, "
                "placement_group_capture_child_tasks="
                f"{self.placement_group_capture_child_tasks})")


__all__ = ["NodeAffinitySchedulingStrategy", "PlacementGroupSchedulingStrategy"]


# ---- node labels ------------------------------------------------------------
# A label requirement travels as (key, op, values) with op one of IN, NOT_IN,
# EXISTS, DOES_NOT_EXIST; a set of them (all must hold) as a sorted tuple.
IN, NOT_IN, EXISTS, DOES_NOT_EXIST = "in", "!in", "exists", "!exists"

NODE_ID_LABEL = "ray.io/node-id"
ACCELERATOR_LABEL = "ray.io/accelerator-type"


class _LabelOperator:
    op = None

    def __init__(self, *values):
        for v in values:
            if not isinstance(v, str):
                raise ValueError(f"{type(self).__name__}() takes label values as strings, "
                                 f"got {v!r}")
        self.values = tuple(values)

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(map(repr, self.values))})"


class _ValuesOperator(_LabelOperator):
    def __init__(self, *values):
        if not values:
            raise ValueError(f"{type(self).__name__}() needs at least one value")
        super().__init__(*values)


class _KeyOperator(_LabelOperator):
    def __init__(self):
        super().__init__()


class In(_ValuesOperator):
    """The node's label has one of these values."""
    op = IN


class NotIn(_ValuesOperator):
    """The node does not have the label, or it has none of these values."""
    op = NOT_IN


class Exists(_KeyOperator):
    """The node has the label, whatever its value."""
    op = EXISTS


class DoesNotExist(_KeyOperator):
    """The node does not have the label."""
    op = DOES_NOT_EXIST


def _expressions(exprs, what):
    if exprs is None:
        return ()
    if not isinstance(exprs, dict):
        raise ValueError(f"NodeLabelSchedulingStrategy's {what} must be a dict of label "
                         f"-> In/NotIn/Exists/DoesNotExist, got {exprs!r}")
    out = []
    for k, v in exprs.items():
        if not isinstance(k, str) or not k:
            raise ValueError(f"a label key must be a non-empty string, got {k!r}")
        if not isinstance(v, _LabelOperator):
            raise ValueError(f"the {what} expression of label {k!r} must be In(...), "
                             f"NotIn(...), Exists() or DoesNotExist(), got {v!r}")
        out.append((k, v.op, v.values))
    return tuple(sorted(out))


class NodeLabelSchedulingStrategy:
    """Runs a task or actor on a node whose labels match every ``hard``
    expression; among those, nodes that also match ``soft`` are preferred."""

    def __init__(self, hard, *, soft=None):
        self.hard = hard
        self.soft = soft
        self._hard = _expressions(hard, "hard")
        self._soft = _expressions(soft, "soft")
        if not self._hard and not self._soft:
            raise ValueError("NodeLabelSchedulingStrategy needs a hard or a soft expression")

    def _key(self):
        return ("labels", self._hard, self._soft)

    def __repr__(self):
        return f"NodeLabelSchedulingStrategy(hard={self.hard!r}, soft={self.soft!r})"


def parse_label_selector(selector):
    """The label_selector option ({key: "v" | "!v" | "in(a,b)" | "!in(a,b)"})
    as a tuple of requirements; ValueError naming a malformed entry."""
    if not isinstance(selector, dict):
        raise ValueError(f"label_selector must be a dict of label -> value, got {selector!r}")
    out = []
    for k, v in selector.items():
        if not isinstance(k, str) or not k:
            raise ValueError(f"label_selector keys must be non-empty strings, got {k!r}")
        if not isinstance(v, str):
            raise ValueError(f"label_selector value of {k!r} must be a string such as 'v', "
                             f"'!v', 'in(a,b)' or '!in(a,b)', got {v!r}")
        s = v.strip()
        neg = s.startswith("!")
        if neg:
            s = s[1:].strip()
        if s.startswith("in(") and s.endswith(")"):
            values = tuple(x.strip() for x in s[3:-1].split(","))
            if not all(values):
                raise ValueError(f"label_selector value {v!r} of {k!r} has an empty value "
                                 "in its in(...) list")
        else:
            if not s or any(c in s for c in "(),"):
                raise ValueError(f"label_selector value {v!r} of {k!r} is not valid: use "
                                 "'v', '!v', 'in(a,b)' or '!in(a,b)'")
            values = (s,)
        out.append((k, NOT_IN if neg else IN, values))
    return tuple(sorted(out))


def labels_match(labels, exprs):
    """Whether a node's labels ({key: value}) satisfy every requirement."""
    for k, op, values in exprs:
        have = labels.get(k)
        if op == IN:
            ok = have is not None and have in values
        elif op == NOT_IN:
            ok = have is None or have not in values
        elif op == EXISTS:
            ok = have is not None
        else:
            ok = have is None
        if not ok:
            return False
    return True


def label_strategy(key):
    """(hard, soft) of a labels strategy key, or None for another strategy."""
    if type(key) is tuple and len(key) == 3 and key[0] == "labels":
        return key[1], key[2]
    return None


def selector_key(strategy_key, selector):
    """The strategy key of a task or actor given the label_selector option:
    the selector's requirements join a NodeLabelSchedulingStrategy's hard
    ones; next to another strategy it is refused (ValueError)."""
    reqs = parse_label_selector(selector)
    if not reqs:
        return strategy_key
    if strategy_key in (None, "DEFAULT"):
        return ("labels", reqs, ())
    found = label_strategy(strategy_key)
    if found is not None:
        return ("labels", tuple(sorted(set(found[0]) | set(reqs))), found[1])
    raise ValueError("label_selector cannot be combined with scheduling_strategy "
                     f"{strategy_key!r} in pyray: use one or the other.")


def parse_labels(labels, what="labels"):
    """Node labels from a dict, a JSON object string or 'k1=v1,k2=v2';
    ValueError naming what is wrong."""
    import json
    if labels is None:
        return {}
    if isinstance(labels, str):
        s = labels.strip()
        if not s:
            return {}
        if s.startswith("{"):
            try:
                labels = json.loads(s)
            except ValueError as err:
                raise ValueError(f"{what}: not a valid JSON object ({err})") from None
        else:
            labels = {}
            for part in s.split(","):
                k, sep, v = part.partition("=")
                if not sep or not k.strip():
                    raise ValueError(f"{what}: {part!r} is not key=value; pass "
                                     "'k1=v1,k2=v2' or a JSON object")
                labels[k.strip()] = v.strip()
    if not isinstance(labels, dict):
        raise ValueError(f"{what} must be a dict of str -> str, got {labels!r}")
    for k, v in labels.items():
        if not isinstance(k, str) or not k or not isinstance(v, str):
            raise ValueError(f"{what} must map non-empty strings to strings, got {k!r}: {v!r}")
        if k.startswith("ray.io/") and k not in (NODE_ID_LABEL, ACCELERATOR_LABEL):
            raise ValueError(f"{what}: the label prefix 'ray.io/' is reserved ({k!r})")
    return dict(labels)


__all__ += ["NodeLabelSchedulingStrategy", "In", "NotIn", "Exists", "DoesNotExist"]
