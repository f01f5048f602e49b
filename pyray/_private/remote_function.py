"""@remote on a function: options, validation, and the submit hot path."""
from __future__ import annotations

import inspect
import sys

from pyray._private import ids, serialization, task_events
from pyray._private import runtime_env as _rte
from pyray._private.context import ctx
from pyray._private.object_ref import ObjectRef
from pyray._private.task_spec import FunctionDescriptor, TaskSpec
from pyray._private.resources import validate_shape

TASK_OPTIONS = {"num_cpus", "num_gpus", "resources", "num_returns", "max_retries",
                "retry_exceptions", "scheduling_strategy", "name", "memory", "runtime_env",
                "max_calls", "accelerator_type", "label_selector", "enable_task_events",
                "_metadata", "placement_group", "placement_group_bundle_index",
                "placement_group_capture_child_tasks", "object_store_memory",
                "_generator_backpressure_num_objects"}


# the placement_group* options that PlacementGroupSchedulingStrategy replaced
_LEGACY_PG = frozenset(("placement_group", "placement_group_bundle_index",
                        "placement_group_capture_child_tasks"))


def validate_options(opts: dict, allowed=TASK_OPTIONS, what="task"):
    for k in opts:
        if k not in allowed:
            raise ValueError(f"Invalid option keyword {k!r} for {what}s. Valid ones are "
                             f"{sorted(allowed)}.")
    for k in ("num_cpus", "num_gpus", "memory"):
        v = opts.get(k)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"The keyword '{k}' only accepts a non-negative number, "
                             f"got {v!r} ({type(v).__name__}).")
        if v < 0:
            raise ValueError(f"The keyword '{k}' only accepts a non-negative number, got {v}.")
    res = opts.get("resources")
    if res is not None:
        if not isinstance(res, dict):
            raise ValueError(f"The keyword 'resources' only accepts a dict, got {res!r}.")
        for name in ("CPU", "GPU"):
            if name in res:
                raise ValueError(f"Use the '{name.lower().replace('cpu', 'num_cpus').replace('gpu', 'num_gpus')}'"
                                 f" argument instead of resources={{'{name}': ...}}.")
        validate_shape(res, what)
    nr = opts.get("num_returns")
    if nr is not None and nr not in ("dynamic", "streaming") and (
            isinstance(nr, bool) or not isinstance(nr, int) or nr < 0):
        raise ValueError(f"The keyword 'num_returns' only accepts an integer >= 0, got {nr!r}.")
    mr = opts.get("max_retries")
    if mr is not None and (isinstance(mr, bool) or not isinstance(mr, int) or mr < -1):
        raise ValueError(f"The keyword 'max_retries' only accepts an integer >= -1, got {mr!r}.")
    ss = opts.get("scheduling_strategy")
    if ss is not None and not (ss in ("DEFAULT", "SPREAD") if isinstance(ss, str)
                               else callable(getattr(ss, "_key", None))):
        raise ValueError(f"Invalid scheduling_strategy {ss!r}. Valid values are \"DEFAULT\", "
                         "\"SPREAD\", PlacementGroupSchedulingStrategy and "
                         "NodeAffinitySchedulingStrategy.")
    nm = opts.get("name")
    if nm is not None and not isinstance(nm, str):
        raise ValueError(f"The keyword 'name' only accepts a string, got {nm!r}.")
    _check_option_types(opts, what)
    re = opts.get("retry_exceptions")
    if re is not None and not isinstance(re, bool):
        if not isinstance(re, (list, tuple)) or not all(
                isinstance(t, type) and issubclass(t, BaseException) for t in re):
            raise ValueError("The keyword 'retry_exceptions' only accepts a bool or a list of "
                             f"exception types, got {re!r}.")


def _check_option_types(opts, what):
    from pyray._private.scheduling_strategies import parse_label_selector
    for k, lo in (("max_calls", 0), ("max_pending_calls", -1)):
        v = opts.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < lo):
            raise ValueError(f"The keyword '{k}' only accepts an integer >= {lo}, got {v!r}.")
    osm = opts.get("object_store_memory")
    if osm is not None:
        if what == "task":      # as Ray
            raise ValueError("Setting 'object_store_memory' is not implemented for tasks")
        if isinstance(osm, bool) or not isinstance(osm, int) or osm < 0:
            raise ValueError(f"The keyword 'object_store_memory' only accepts a non-negative "
                             f"integer (bytes), got {osm!r}.")
    at = opts.get("accelerator_type")
    if at is not None and (not isinstance(at, str) or not at):
        raise ValueError(f"The keyword 'accelerator_type' only accepts a string such as "
                         f"'A100', got {at!r}.")
    for k in ("_metadata",):
        if opts.get(k) is not None and not isinstance(opts[k], dict):
            raise ValueError(f"The keyword '{k}' only accepts a dict, got {opts[k]!r}.")
    ete = opts.get("enable_task_events")
    if ete is not None and not isinstance(ete, bool):
        raise ValueError(f"The keyword 'enable_task_events' only accepts a bool, got {ete!r}.")
    if opts.get("label_selector") is not None:
        parse_label_selector(opts["label_selector"])


def make_shape(opts, default_cpus=1):
    shape = {}
    cpus = opts.get("num_cpus")
    cpus = default_cpus if cpus is None else cpus
    if cpus:
        shape["CPU"] = float(cpus)
    if opts.get("num_gpus"):
        shape["GPU"] = float(opts["num_gpus"])
    if opts.get("memory"):
        shape["memory"] = float(opts["memory"])
    if opts.get("object_store_memory"):
        shape["object_store_memory"] = float(opts["object_store_memory"])
    if opts.get("accelerator_type"):
        # as Ray: nodes with this accelerator have the resource (value 1)
        shape["accelerator_type:" + opts["accelerator_type"]] = 0.001
    for k, v in (opts.get("resources") or {}).items():
        if v:
            shape[k] = float(v)
    return shape


def strategy_key(strategy, label_selector=None):
    if strategy is None or isinstance(strategy, str):
        key = strategy
    else:
        key = getattr(strategy, "_key", None)
        key = key() if callable(key) else repr(strategy)
    if label_selector:
        from pyray._private.scheduling_strategies import selector_key
        key = selector_key(key, label_selector)
    return key


def export_function(fn, name):
    import cloudpickle
    try:
        # Recent cloudpickle replaces a shipped code object's file name with a
        # placeholder, which takes the source lines out of remote tracebacks;
        # the file name travels beside it and the worker puts it back.
        data = cloudpickle.dumps((fn, _source_file(fn)), protocol=5)
    except Exception as err:  # noqa: BLE001 - reported with the function's name
        raise TypeError(f"Could not serialize the function {name}: {err}. Functions "
                        "sent to workers must be picklable (no open files, locks or "
                        "sockets captured in their closure).") from err
    check_function_size(data, name, "actor" if isinstance(fn, type) else "remote function")
    return FunctionDescriptor(ids.random_id(), data, name, getattr(fn, "__module__", None))


# a function or class sent to workers: a warning above the first size, an
# error above the second (usually a large object captured by mistake)
FUNCTION_SIZE_WARN_THRESHOLD = 10 ** 7
FUNCTION_SIZE_ERROR_THRESHOLD = 10 ** 8


def check_function_size(data, name, what):
    size = len(data)
    if size <= FUNCTION_SIZE_WARN_THRESHOLD:
        return
    mib = size / (1 << 20)
    hint = ("Check that its definition is not implicitly capturing a large array or other "
            "object in scope. Tip: use pyray.put() to put large objects in the object store.")
    if size > FUNCTION_SIZE_ERROR_THRESHOLD:
        raise ValueError(f"The {what} '{name}' is too large ({mib:.1f} MiB > "
                         f"FUNCTION_SIZE_ERROR_THRESHOLD="
                         f"{FUNCTION_SIZE_ERROR_THRESHOLD / (1 << 20):.1f} MiB). {hint}")
    import logging
    logging.getLogger("pyray").warning("The %s '%s' is very large (%.1f MiB). %s", what, name,
                                       mib, hint)


def _source_file(obj):
    code = getattr(obj, "__code__", None)
    if code is not None:
        return code.co_filename
    mod = sys.modules.get(getattr(obj, "__module__", None) or "")
    return getattr(mod, "__file__", None)


def ensure_initialized():
    cw = ctx.core_worker
    if cw is None:
        import os
        from pyray._private import api
        # as Ray: RAY_ENABLE_AUTO_CONNECT=0 turns starting a cluster on first use off
        if (os.environ.get("PYRAY_ENABLE_AUTO_CONNECT") or
                os.environ.get("RAY_ENABLE_AUTO_CONNECT", "")) == "0":
            from pyray.exceptions import RaySystemError
            raise RaySystemError("pyray has not been started yet. You can start pyray with "
                                 "'pyray.init()'.")
        api.init()
        cw = ctx.core_worker
    return cw


def serialize_args(args, kwargs, name):
    try:
        return serialization.serialize((args, kwargs))
    except Exception as err:  # noqa: BLE001 - find and name the culprit
        for i, a in enumerate(args):
            try:
                serialization.serialize(a)
            except Exception as inner:  # noqa: BLE001
                raise TypeError(f"Could not serialize argument {i} ({type(a).__name__}: "
                                f"{a!r:.80}) of {name}: {inner}") from inner
        for k, v in kwargs.items():
            try:
                serialization.serialize(v)
            except Exception as inner:  # noqa: BLE001
                raise TypeError(f"Could not serialize keyword argument {k!r} "
                                f"({type(v).__name__}: {v!r:.80}) of {name}: {inner}") from inner
        raise TypeError(f"Could not serialize the arguments of {name}: {err}") from err


_POS_KINDS = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_NO_DEFAULT = inspect.Parameter.empty


def signature_params(fn, drop_first=False):
    """A picklable description of fn's parameters, (name, kind, has_default)
    for each, or None where calls cannot be checked (no signature, or one
    that takes anything)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    params = list(sig.parameters.values())
    if drop_first and params and params[0].kind in _POS_KINDS:
        params = params[1:]
    kinds = {p.kind for p in params}
    if inspect.Parameter.VAR_POSITIONAL in kinds and inspect.Parameter.VAR_KEYWORD in kinds \
            and all(p.default is not _NO_DEFAULT for p in params
                    if p.kind not in (inspect.Parameter.VAR_POSITIONAL,
                                      inspect.Parameter.VAR_KEYWORD)):
        return None
    return tuple((p.name, int(p.kind), p.default is not _NO_DEFAULT) for p in params)


class ArgChecker:
    """Checks a call's arguments against a signature at `.remote()`, as the
    function itself would (TypeError in the caller, not in the worker).

    The common call (positional arguments only, as many as the function
    takes) is accepted by a count; anything else is bound to the signature
    once per shape (how many positional arguments, which keywords): whether
    binding succeeds depends on nothing else."""
    __slots__ = ("lo", "hi", "sig", "ok")

    def __init__(self, params):
        P = inspect.Parameter
        kind_of = type(P.POSITIONAL_ONLY)
        self.sig = inspect.Signature([
            P(name, kind_of(kind), default=None if has_default else _NO_DEFAULT)
            for name, kind, has_default in params])
        pos = [p for p in params if p[1] in _POS_KINDS]
        required_kw = any(p[1] == P.KEYWORD_ONLY and not p[2] for p in params)
        self.ok = set()         # call shapes already bound successfully
        self.lo = sum(1 for p in pos if not p[2])
        self.hi = -1 if required_kw else (
            1 << 30 if any(p[1] == P.VAR_POSITIONAL for p in params) else len(pos))

    def __call__(self, args, kwargs):
        if not kwargs:
            if self.lo <= len(args) <= self.hi:
                return
            shape = len(args)
        else:
            shape = (len(args), *kwargs)
        if shape in self.ok:
            return
        try:
            self.sig.bind(*args, **kwargs)
        except TypeError as err:
            raise TypeError(str(err)) from None
        if len(self.ok) < 64:
            self.ok.add(shape)


def arg_checker(params):
    return None if params is None else ArgChecker(params)


def returned(refs, num_returns):
    """What `.remote()` gives back: one ref, None, or the list of refs."""
    if num_returns == 1:
        return refs[0]
    if num_returns == 0:
        return None
    return refs


def build_spec(cw, desc, name, args, kwargs, num_returns, shape, key, max_retries,
               retry_exceptions):
    """Makes the TaskSpec and the refs it returns.  Hot path."""
    ser = serialize_args(args, kwargs, name)
    task_id = ids.new_task_id()
    return_ids = [ids.object_id(task_id, i + 1) for i in range(num_returns)]
    arg_refs = ser.refs
    if ser.nbytes > cw.config.max_inline_bytes and cw.plasma is not None:
        holder = cw.put_serialized(ser)      # args travel through the store
        arg_refs = arg_refs + [holder]
        payload = (holder._id, None)
    else:
        payload = (ser.data, [bytes(b) for b in ser.buffers] if ser.buffers else [])
    spec = TaskSpec(task_id, desc, name, payload, arg_refs, return_ids, key, shape,
                    max_retries, retry_exceptions)
    if arg_refs:
        deps = [a for a in args if type(a) is ObjectRef]
        if kwargs:
            deps += [v for v in kwargs.values() if type(v) is ObjectRef]
        spec.deps = deps
    addr = cw.addr
    refs = [ObjectRef(oid, addr) for oid in return_ids]
    return spec, refs


class RemoteFunction:
    def __init__(self, fn, options=None):
        if not callable(fn):
            raise TypeError(f"@remote expects a function or a class, got {fn!r}")
        options = dict(options or {})
        validate_options(options)
        if options.get("num_gpus") and options.get("max_calls") is None:
            options["max_calls"] = 1    # as Ray: a GPU task's worker is not reused
        self._function = fn
        self._name = getattr(fn, "__qualname__", getattr(fn, "__name__", repr(fn)))
        self._options = options
        self._desc = None
        self._check_args = arg_checker(signature_params(fn))
        self._prepare()
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", self._name)
        self.__module__ = getattr(fn, "__module__", None)
        self.__wrapped__ = fn

    def _prepare(self):
        o = self._options
        self._shape = make_shape(o)
        sched = o.get("scheduling_strategy")
        self._key = (tuple(sorted(self._shape.items())),
                     strategy_key(sched, o.get("label_selector")))
        # a task without a strategy of its own joins the group of a parent
        # that captures child tasks (placement_group_capture_child_tasks)
        self._capturable, self._captured = True, {}
        if sched is not None or "placement_group" in o:
            self._place_in_group(o)
        nr = o.get("num_returns")
        # a generator task (generators.py): None, "streaming" or "dynamic"
        self._stream = _generator_mode(nr, self._function)
        self._num_returns = 1 if nr is None or self._stream is not None else nr
        if o.get("max_calls"):
            # its workers retire after that many calls (task_submitter)
            self._key = (self._key[0], ("calls", o["max_calls"], self._key[1]))
        mr = o.get("max_retries")
        self._max_retries = mr
        self._retry_exceptions = o.get("retry_exceptions", False)
        # its runtime env (docs/runtime_env.md), validated here; merged with
        # the parent's and resolved on first use (runtime_env.task_key)
        self._runtime_env = _rte.validate(o.get("runtime_env"))
        self._env_cache = None
        # what the task is called (runtime context, errors, log prefixes):
        # the `name` option, else the function's qualified name
        self._task_name = o.get("name") or self._name
        self._no_events = o.get("enable_task_events") is False

    def __call__(self, *args, **kwargs):
        raise TypeError(f"Remote functions cannot be called directly. Instead of running "
                        f"'{self.__name__}()', try '{self.__name__}.remote()'.")

    def __getstate__(self):
        return {"fn": self._function, "options": self._options}

    def __setstate__(self, state):
        self.__init__(state["fn"], state["options"])

    def options(self, **options):
        validate_options(options)
        merged = dict(self._options)
        merged.update(options)
        clone = RemoteFunction.__new__(RemoteFunction)
        clone.__dict__.update(self.__dict__)
        clone._options = merged
        clone._prepare()
        clone._parent = self._parent or self
        if _LEGACY_PG.intersection(merged):
            from pyray._private.placement_group import warn_legacy_options
            warn_legacy_options(merged, 2)
        return clone

    _parent = None

    def _get_desc(self):
        if self._parent is not None:
            return self._parent._get_desc()
        if self._desc is None:
            fn = self._function
            if inspect.iscoroutinefunction(fn):
                fn = _wrap_async(fn)
            self._desc = export_function(fn, self._name)
        return self._desc

    def _place_in_group(self, o):
        from pyray._private.placement_group import inherits_placement, place, placement_of
        self._capturable = inherits_placement(o)
        found = placement_of(o)
        if found is not None:
            pg, index, capture = found
            self._shape = place(pg, index, capture, self._shape, f"task {self._name}")
            self._key = (tuple(sorted(self._shape.lease.items())), ("pg", bytes(pg.id), index))

    def _in_parent_group(self, cw):
        """This function placed in the captured group of the running task,
        or None.  Only in processes that ran such a task."""
        from pyray._private.placement_group import captured_placement
        from pyray._private.scheduling_strategies import PlacementGroupSchedulingStrategy
        found = captured_placement(cw)
        if found is None:
            return None
        pg = found[0]
        clone = self._captured.get(pg.id)
        if clone is None:
            clone = self._captured[pg.id] = self.options(
                scheduling_strategy=PlacementGroupSchedulingStrategy(pg, -1, True))
        return clone

    def remote(self, *args, **kwargs):
        cw = ctx.core_worker or ensure_initialized()
        if cw.pg_capture and self._capturable:
            placed = self._in_parent_group(cw)
            if placed is not None:
                return placed.remote(*args, **kwargs)
        check = self._check_args
        if check is not None and (kwargs or not check.lo <= len(args) <= check.hi):
            check(args, kwargs)     # a count accepts the common call without a call
        mr = self._max_retries
        if mr is None:
            mr = cw.config.task_max_retries
        key = self._key
        if self._runtime_env is not None or _rte.parent is not None:
            key = _rte.task_key(self, cw)
        spec, refs = build_spec(cw, self._get_desc(), self._task_name, args, kwargs,
                                self._num_returns, self._shape, key, mr,
                                self._retry_exceptions)
        if self._no_events:
            task_events.skip(spec.task_id)
        if self._stream is not None:
            from pyray._private import generators
            return generators.submit(cw, spec, refs[0], self._stream,
                                     self._options.get("_generator_backpressure_num_objects"))
        cw.submit(spec)
        return refs[0] if self._num_returns == 1 else returned(refs, self._num_returns)

    def bind(self, *args, **kwargs):
        """A FunctionNode: this call in a DAG, run by its execute() (docs/dag.md)."""
        from pyray.dag import FunctionNode
        return FunctionNode(self, args, kwargs, self._options)


def _generator_mode(num_returns, fn):
    """"streaming" or "dynamic" for a generator task (generators.py), else
    None; a generator function streams unless num_returns says otherwise."""
    if num_returns in ("streaming", "dynamic"):
        return num_returns
    if num_returns is None and (inspect.isgeneratorfunction(fn) or
                                inspect.isasyncgenfunction(fn)):
        return "streaming"
    return None


def _wrap_async(fn):
    import asyncio
    import functools

    @functools.wraps(fn)
    def run(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))
    return run

