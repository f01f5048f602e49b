"""@remote on a class: actor classes, handles and method calls."""
from __future__ import annotations

import inspect

from pyray import exceptions as exc
from pyray._private import ids
from pyray._private.context import ctx
from pyray._private.object_ref import ObjectRef
from pyray._private.protocol import Op
from pyray._private.remote_function import (TASK_OPTIONS, build_spec, ensure_initialized,
                                            export_function, make_shape, returned, serialize_args,
                                            strategy_key, validate_options)

ACTOR_OPTIONS = (TASK_OPTIONS - {"num_returns", "max_retries", "retry_exceptions"}) | {
    "max_concurrency", "max_restarts", "max_task_retries", "name", "namespace", "lifetime",
    "get_if_exists", "max_pending_calls", "allow_out_of_order_execution"}


class ActorExit(SystemExit):
    """Raised by exit_actor(): the worker stops the actor after replying."""


def exit_actor():
    """Stops the current actor after the running method returns."""
    w = getattr(ctx, "worker", None)
    if w is None or getattr(w, "actor", None) is None:
        raise TypeError("exit_actor() called outside of an actor: it can only be used "
                        "inside an actor method.")
    raise ActorExit(0)


def _method_meta(cls):
    methods = {}
    for name, fn in inspect.getmembers(cls, predicate=lambda m: callable(m)):
        if name.startswith("__") and name not in ("__call__",):
            continue
        opts = getattr(fn, "__pyray_method_options__", {})
        gen = inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)
        methods[name] = {"num_returns": opts.get("num_returns", "streaming" if gen else 1),
                         "backpressure": opts.get("_generator_backpressure_num_objects"),
                         "max_task_retries": opts.get("max_task_retries"),
                         "is_async": inspect.iscoroutinefunction(fn) or
                         inspect.isasyncgenfunction(fn)}
    return methods


class ActorClass:
    def __init__(self, cls, options):
        validate_options(options, ACTOR_OPTIONS, "actor")
        _validate_actor_options(options)
        self._cls = cls
        self._options = options
        self._desc = None
        self._meta = None
        self.__name__ = cls.__name__
        self.__qualname__ = getattr(cls, "__qualname__", cls.__name__)
        self.__doc__ = cls.__doc__
        self.__module__ = cls.__module__

    def __call__(self, *args, **kwargs):
        raise TypeError(f"Actors cannot be instantiated directly. Instead of "
                        f"'{self.__name__}()', use '{self.__name__}.remote()'.")

    def options(self, **options):
        validate_options(options, ACTOR_OPTIONS, "actor")
        merged = dict(self._options)
        merged.update(options)
        _validate_actor_options(merged)
        clone = ActorClass.__new__(ActorClass)
        clone.__dict__.update(self.__dict__)
        clone._options = merged
        clone._base = getattr(self, "_base", None) or self
        return clone

    def _describe(self):
        base = getattr(self, "_base", None) or self
        if base._desc is None:
            base._desc = export_function(base._cls, base.__qualname__)
            methods = _method_meta(base._cls)
            base._meta = {"class_name": base.__name__, "methods": methods,
                          "is_async": any(m["is_async"] for m in methods.values())}
        return base._desc, base._meta

    def remote(self, *args, **kwargs):
        return self._create(args, kwargs)

    def _create(self, args, kwargs):
        cw = ctx.core_worker or ensure_initialized()
        desc, meta = self._describe()
        o = self._options
        name = o.get("name")
        namespace = o.get("namespace") or ctx.namespace
        if o.get("lifetime") not in (None, "detached", "non_detached"):
            raise ValueError(f"lifetime must be 'detached' or None, got {o.get('lifetime')!r}")
        if o.get("get_if_exists") and not name:
            raise ValueError("get_if_exists=True needs a name for the actor.")
        cpus = o.get("num_cpus")
        shape = make_shape(o, default_cpus=0 if cpus is None else cpus)
        placement = None
        if o.get("scheduling_strategy") is not None or "placement_group" in o or cw.pg_capture:
            from pyray._private.placement_group import place_actor
            shape, placement = place_actor(o, shape, cw, f"actor {self.__name__}")
        ser = serialize_args(args, kwargs, f"{self.__name__}.__init__")
        max_conc = o.get("max_concurrency")
        if max_conc is None:
            max_conc = 1000 if meta["is_async"] else 1
        actor_id = ids.random_id()
        options = {"max_restarts": o.get("max_restarts", 0) or 0,
                   "max_concurrency": max_conc, "is_async": meta["is_async"],
                   "max_task_retries": o.get("max_task_retries", 0) or 0}
        spec = {
            "actor_id": actor_id, "name": name, "namespace": namespace,
            "get_if_exists": bool(o.get("get_if_exists")),
            "detached": o.get("lifetime") == "detached", "shape": shape,
            "class_id": desc.fn_id, "class_bytes": desc.data, "meta": meta,
            "ctor_args": (ser.data, [bytes(b) for b in ser.buffers]),
            "options": options, "job_id": cw.job_id, "driver_addr": cw.driver_addr,
            "job_config": cw.job_config, "owner": cw.addr,
            "creation_task_id": ids.new_task_id(),
            "strategy": strategy_key(o.get("scheduling_strategy")),
            "placement_group": placement,
        }
        reply = cw.rpc(cw.gcs_addr, Op.REGISTER_ACTOR, spec)
        aid = reply["actor_id"]
        # refs in the constructor's arguments must outlive the actor's (re)starts
        cw.keep_alive(aid, ser.refs)
        owned = not reply["existing"] and not spec["detached"]
        return ActorHandle(aid, reply["meta"], options["max_task_retries"], owned=owned)

    def bind(self, *a, **k):
        raise NotImplementedError("DAG building (bind) is not supported by pyray")


def _validate_actor_options(o):
    mc = o.get("max_concurrency")
    if mc is not None and (isinstance(mc, bool) or not isinstance(mc, int) or mc < 1):
        raise ValueError(f"max_concurrency must be an integer >= 1, got {mc!r}")
    for k in ("max_restarts", "max_task_retries"):
        v = o.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < -1):
            raise ValueError(f"{k} must be an integer >= -1, got {v!r}")
    name = o.get("name")
    if name is not None and (not isinstance(name, str) or not name):
        raise ValueError(f"An actor's name must be a non-empty string, got {name!r}")


class ActorMethod:
    __slots__ = ("_handle", "_name", "_num_returns", "_retries")

    def __init__(self, handle, name, num_returns, retries):
        self._handle = handle
        self._name = name
        self._num_returns = num_returns
        self._retries = retries

    def __call__(self, *args, **kwargs):
        raise TypeError(f"Actor methods cannot be called directly. Instead of running "
                        f"'actor.{self._name}()', try 'actor.{self._name}.remote()'.")

    def options(self, **opts):
        bad = set(opts) - {"num_returns", "max_task_retries", "name", "concurrency_group",
                           "retry_exceptions", "enable_task_events"}
        if bad:
            raise ValueError(f"Invalid option(s) for an actor method: {sorted(bad)}")
        nr = opts.get("num_returns", self._num_returns)
        if nr not in ("streaming", "dynamic") and (
                isinstance(nr, bool) or not isinstance(nr, int) or nr < 0):
            raise ValueError(f"num_returns must be an integer >= 0, got {nr!r}")
        return ActorMethod(self._handle, self._name, nr,
                           opts.get("max_task_retries", self._retries))

    def remote(self, *args, **kwargs):
        h = self._handle
        cw = ctx.core_worker or ensure_initialized()
        if type(self._num_returns) is not int:
            return self._remote_generator(cw, args, kwargs)
        spec, refs = build_spec(cw, _METHOD_DESC, self._name, args, kwargs, self._num_returns,
                                None, None, self._retries, False)
        spec.actor = h._actor_id
        cw.submit_actor_task(spec)
        return returned(refs, self._num_returns)

    def _remote_generator(self, cw, args, kwargs):
        """A call of a generator method (pyray/_private/generators.py)."""
        from pyray._private import generators
        h = self._handle
        spec, refs = build_spec(cw, _METHOD_DESC, self._name, args, kwargs, 1, None, None,
                                self._retries, False)
        spec.actor = h._actor_id
        info = h._meta["methods"].get(self._name) or {}
        return generators.submit(cw, spec, refs[0], self._num_returns, info.get("backpressure"),
                                 actor=True)


class _MethodDesc:
    """Actor calls name their method; there is no function to ship."""
    fn_id = None
    data = None


_METHOD_DESC = _MethodDesc()


class ActorHandle:
    def __init__(self, actor_id, meta, max_task_retries=0, owned=False):
        self._actor_id = actor_id
        self._meta = meta
        self._retries = max_task_retries
        self._owned = owned
        self._methods = {}
        cw = ctx.core_worker
        if owned and cw is not None:
            cw.add_actor_handle(actor_id)
        self._cw = cw if owned else None

    def __getattr__(self, name):
        if name.startswith("__") or name in ("_meta", "_methods", "_actor_id"):
            raise AttributeError(name)
        # A new ActorMethod per access: one cached on the handle would point
        # back at it, and the cycle would keep the actor alive after the
        # user's last reference to the handle is gone.
        m = self._methods.get(name)
        if m is None:
            info = self._meta["methods"].get(name)
            if info is None:
                raise AttributeError(f"'{self._meta['class_name']}' actor has no method "
                                     f"{name!r}")
            retries = info.get("max_task_retries")
            m = self._methods[name] = (info["num_returns"],
                                       self._retries if retries is None else retries)
        return ActorMethod(self, name, m[0], m[1])

    def __del__(self):
        cw = self._cw
        if cw is not None:
            cw.decref_q.append((self._actor_id,))

    def __reduce__(self):
        cw = self._cw
        if cw is not None:
            cw.actor_handle_escaped(self._actor_id)
        return (_rebuild_handle, (self._actor_id, self._meta, self._retries))

    def __repr__(self):
        return f"Actor({self._meta['class_name']}, {self._actor_id.hex()})"

    def __hash__(self):
        return hash(self._actor_id)

    def __eq__(self, other):
        return isinstance(other, ActorHandle) and other._actor_id == self._actor_id

    @property
    def _ray_actor_id(self):
        return self._actor_id

    def _actor_id_hex(self):
        return self._actor_id.hex()


def _rebuild_handle(actor_id, meta, retries):
    return ActorHandle(actor_id, meta, retries, owned=False)


def make_actor_class(cls, options):
    return ActorClass(cls, options)


def get_actor(name, namespace=None):
    if not isinstance(name, str) or not name:
        raise ValueError(f"get_actor() needs a non-empty name, got {name!r}")
    cw = ctx.core_worker or ensure_initialized()
    ns = namespace if namespace is not None else ctx.namespace
    found = cw.rpc(cw.gcs_addr, Op.GET_NAMED_ACTOR, name, ns)
    if found is None:
        raise ValueError(f"Failed to look up actor with name {name!r} in namespace {ns!r}. "
                         "It was never created, or it has died.")
    return ActorHandle(found["actor_id"], found["meta"], 0, owned=False)


def kill(actor, *, no_restart=True):
    if not isinstance(actor, ActorHandle):
        raise ValueError(f"kill() expects an actor handle, got {type(actor).__name__}. "
                         "To stop a task, use cancel().")
    cw = ctx.core_worker or ensure_initialized()
    cw.rpc(cw.gcs_addr, Op.KILL_ACTOR, actor._actor_id, bool(no_restart))
    if no_restart:
        cw.actor_killed(actor._actor_id)


_unused = (exc, ObjectRef)
