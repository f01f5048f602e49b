"""@remote on a class: actor classes, handles and method calls."""
from __future__ import annotations

import inspect

from pyray import exceptions as exc
from pyray._private import ids, task_events
from pyray._private import runtime_env as _rte
from pyray._private.context import ctx
from pyray._private.object_ref import ObjectRef
from pyray._private.protocol import Op
from pyray._private.remote_function import (_LEGACY_PG, TASK_OPTIONS, arg_checker, build_spec,
                                            ensure_initialized, export_function, make_shape,
                                            returned, serialize_args, signature_params,
                                            strategy_key, validate_options)

ACTOR_OPTIONS = (TASK_OPTIONS - {"num_returns", "max_retries"}) | {
    "max_concurrency", "max_restarts", "max_task_retries", "name", "namespace", "lifetime",
    "get_if_exists", "max_pending_calls", "allow_out_of_order_execution", "concurrency_groups"}


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
        # a static or class method's signature has no `self` to leave out
        bound = not isinstance(inspect.getattr_static(cls, name, None),
                               (staticmethod, classmethod))
        gen = inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)
        methods[name] = {"num_returns": opts.get("num_returns", "streaming" if gen else 1),
                         "backpressure": opts.get("_generator_backpressure_num_objects"),
                         "max_task_retries": opts.get("max_task_retries"),
                         "retry_exceptions": _pack_retry_exceptions(
                             opts.get("retry_exceptions")),
                         "concurrency_group": opts.get("concurrency_group"),
                         "enable_task_events": opts.get("enable_task_events", True),
                         "sig": signature_params(fn, drop_first=bound),
                         "is_async": inspect.iscoroutinefunction(fn) or
                         inspect.isasyncgenfunction(fn)}
    return methods


def _pack_retry_exceptions(re):
    """retry_exceptions as it travels in an actor's description (which the
    GCS reads): a list of exception classes is pickled, the GCS cannot
    import the user's classes."""
    if re is None or isinstance(re, bool):
        return re
    import cloudpickle
    return cloudpickle.dumps(list(re))


def _unpack_retry_exceptions(re):
    if isinstance(re, bytes):
        import pickle
        return pickle.loads(re)
    return re


def _validate_method_options(opts, what):
    nr = opts.get("num_returns")
    if nr is not None and nr not in ("streaming", "dynamic") and (
            isinstance(nr, bool) or not isinstance(nr, int) or nr < 0):
        raise ValueError(f"num_returns must be an integer >= 0, got {nr!r}")
    mtr = opts.get("max_task_retries")
    if mtr is not None and (isinstance(mtr, bool) or not isinstance(mtr, int) or mtr < -1):
        raise ValueError(f"max_task_retries must be an integer >= -1, got {mtr!r}")
    validate_options({"retry_exceptions": opts.get("retry_exceptions")}, what=what)
    cg = opts.get("concurrency_group")
    if cg is not None and not isinstance(cg, str):
        raise TypeError(f"concurrency_group must be a string, got {cg!r}")
    nm = opts.get("name")
    if nm is not None and (not isinstance(nm, str) or not nm):
        raise ValueError(f"An actor method's name must be a non-empty string, got {nm!r}")
    ete = opts.get("enable_task_events")
    if ete is not None and not isinstance(ete, bool):
        raise ValueError(f"enable_task_events must be a bool, got {ete!r}")


class ActorClass:
    def __init__(self, cls, options):
        _validate_name(options.get("name"), options.get("namespace"))
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
        _validate_name(options.get("name"), options.get("namespace"))
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
            init = getattr(base._cls, "__init__", None)
            base._check_init = arg_checker(
                None if init is None or init is object.__init__
                else signature_params(init, drop_first=True))
            methods = _method_meta(base._cls)
            base._meta = {"class_name": base.__name__, "methods": methods,
                          "is_async": any(m["is_async"] for m in methods.values())}
        return base._desc, base._meta

    def remote(self, *args, **kwargs):
        return self._create(args, kwargs)

    def _create(self, args, kwargs):
        cw = ctx.core_worker or ensure_initialized()
        desc, meta = self._describe()
        check = getattr(getattr(self, "_base", None) or self, "_check_init", None)
        if check is not None:
            check(args, kwargs)
        o = self._options
        groups = o.get("concurrency_groups") or {}
        for mname, m in meta["methods"].items():
            g = m.get("concurrency_group")
            if g is not None and g not in groups:
                raise ValueError(f"The method {mname!r} of {self.__name__} is in the "
                                 f"concurrency group {g!r}, which the actor does not define "
                                 f"(concurrency_groups={groups!r}).")
        name = o.get("name")
        namespace = o.get("namespace") or ctx.namespace
        if o.get("lifetime") not in (None, "detached", "non_detached"):
            raise ValueError(f"lifetime must be 'detached' or None, got {o.get('lifetime')!r}")
        if o.get("get_if_exists") and not name:
            raise ValueError("get_if_exists=True needs a name for the actor.")
        cpus = o.get("num_cpus")
        shape = make_shape(o, default_cpus=0 if cpus is None else cpus)
        placement = None
        if _LEGACY_PG.intersection(o):
            from pyray._private.placement_group import warn_legacy_options
            warn_legacy_options(o, 3)
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
                   "max_task_retries": o.get("max_task_retries", 0) or 0,
                   "concurrency_groups": dict(groups),
                   "enable_task_events": o.get("enable_task_events", True)}
        spec = {
            "actor_id": actor_id, "name": name, "namespace": namespace,
            "get_if_exists": bool(o.get("get_if_exists")),
            "detached": o.get("lifetime") == "detached", "shape": shape,
            "class_id": desc.fn_id, "class_bytes": desc.data, "meta": meta,
            "ctor_args": (ser.data, [bytes(b) for b in ser.buffers]),
            "options": options, "job_id": cw.job_id, "driver_addr": cw.driver_addr,
            "job_config": cw.job_config, "owner": cw.addr,
            "creation_task_id": ids.new_task_id(),
            "strategy": strategy_key(o.get("scheduling_strategy"), o.get("label_selector")),
            "placement_group": placement,
        }
        env = o.get("runtime_env")
        if env is not None or _rte.parent is not None:
            # the env's marker: it rides on the actor's lease key (docs/runtime_env.md)
            spec["runtime_env"] = _rte.marker_for(_rte.validate(env), cw)
        reply = cw.rpc(cw.gcs_addr, Op.REGISTER_ACTOR, spec)
        aid = reply["actor_id"]
        # refs in the constructor's arguments must outlive the actor's (re)starts
        cw.keep_alive(aid, ser.refs)
        owned = not reply["existing"] and not spec["detached"]
        mpc = o.get("max_pending_calls")
        ooo = bool(o.get("allow_out_of_order_execution"))
        policy = (-1 if mpc is None else mpc, ooo) if (mpc is not None and mpc >= 0) or ooo \
            else None
        return ActorHandle(aid, reply["meta"], options["max_task_retries"], owned=owned,
                           retry_exceptions=o.get("retry_exceptions", False), policy=policy)

    def bind(self, *args, **kwargs):
        """A ClassNode: this actor's creation in a DAG (docs/dag.md)."""
        from pyray.dag import ClassNode
        return ClassNode(self, args, kwargs, self._options)


def _validate_actor_options(o):
    _rte.validate(o.get("runtime_env"))
    mc = o.get("max_concurrency")
    if mc is not None and (isinstance(mc, bool) or not isinstance(mc, int) or mc < 1):
        raise ValueError(f"max_concurrency must be an integer >= 1, got {mc!r}")
    for k in ("max_restarts", "max_task_retries"):
        v = o.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < -1):
            raise ValueError(f"{k} must be an integer >= -1, got {v!r}")
    groups = o.get("concurrency_groups")
    if groups is not None:
        if not isinstance(groups, dict):
            raise TypeError(f"concurrency_groups must be a dict of name -> max concurrency, "
                            f"got {groups!r}")
        for g, n in groups.items():
            if not isinstance(g, str) or not g:
                raise ValueError(f"A concurrency group's name must be a non-empty string, "
                                 f"got {g!r}")
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ValueError(f"The max concurrency of concurrency group {g!r} must be an "
                                 f"integer >= 1, got {n!r}")


def _validate_name(name, namespace):
    if name is not None:
        if not isinstance(name, str):
            raise TypeError(f"name must be None or a string, got: '{type(name)}'.")
        if name == "":
            raise ValueError("Actor name cannot be an empty string.")
    if namespace is not None:
        if not isinstance(namespace, str):
            raise TypeError(f"namespace must be None or a string, got: '{type(namespace)}'.")
        if namespace == "":
            raise ValueError('"" is not a valid namespace. Pass None to not specify a '
                             'namespace.')


class ActorMethod:
    __slots__ = ("_handle", "_name", "_num_returns", "_retries", "_retry_exc", "_group",
                 "_check", "_desc", "_no_events")

    def __init__(self, handle, name, num_returns, retries, retry_exc=False, group=None,
                 check=None, task_name=None, no_events=False):
        self._no_events = no_events     # enable_task_events=False (pyray._private.task_events)
        self._handle = handle
        self._name = name
        self._num_returns = num_returns
        self._retries = retries
        self._retry_exc = retry_exc
        self._group = group
        self._check = check
        # the `name` option: what the call is called (runtime context, errors)
        self._desc = _METHOD_DESC if task_name is None else _NamedCall(task_name)

    def __call__(self, *args, **kwargs):
        raise TypeError(f"Actor methods cannot be called directly. Instead of running "
                        f"'actor.{self._name}()', try 'actor.{self._name}.remote()'.")

    def options(self, **opts):
        bad = set(opts) - {"num_returns", "max_task_retries", "name", "concurrency_group",
                           "retry_exceptions", "enable_task_events"}
        if bad:
            raise ValueError(f"Invalid option(s) for an actor method: {sorted(bad)}")
        _validate_method_options(opts, "actor method")
        return ActorMethod(self._handle, self._name, opts.get("num_returns", self._num_returns),
                           opts.get("max_task_retries", self._retries),
                           opts.get("retry_exceptions", self._retry_exc),
                           opts.get("concurrency_group", self._group), self._check,
                           opts.get("name", self._desc.name),
                           opts.get("enable_task_events", not self._no_events) is False)

    def remote(self, *args, **kwargs):
        h = self._handle
        check = self._check
        if check is not None:
            check(args, kwargs)
        cw = ctx.core_worker or ensure_initialized()
        if type(self._num_returns) is not int:
            return self._remote_generator(cw, args, kwargs)
        spec, refs = build_spec(cw, self._desc, self._name, args, kwargs, self._num_returns,
                                None, None, self._retries, self._retry_exc)
        # an actor call's shape is its concurrency group (None: the method's own)
        spec.shape = self._group
        spec.actor = h._actor_id
        if self._no_events:
            task_events.skip(spec.task_id)
        cw.submit_actor_task(spec)
        return returned(refs, self._num_returns)

    def bind(self, *args, **kwargs):
        """A ClassMethodNode: this call of the actor in a DAG (docs/dag.md)."""
        from pyray.dag.class_node import bind_actor_method
        return bind_actor_method(self, self._handle, self._name, args, kwargs)

    def _remote_generator(self, cw, args, kwargs):
        """A call of a generator method (pyray/_private/generators.py)."""
        from pyray._private import generators
        h = self._handle
        spec, refs = build_spec(cw, self._desc, self._name, args, kwargs, 1, None, None,
                                self._retries, self._retry_exc)
        spec.shape = self._group
        spec.actor = h._actor_id
        info = h._meta["methods"].get(self._name) or {}
        return generators.submit(cw, spec, refs[0], self._num_returns, info.get("backpressure"),
                                 actor=True)


class _MethodDesc:
    """Actor calls name their method; there is no function to ship."""
    fn_id = None
    data = None
    name = None     # the call's own name (the `name` option), None: Class.method


class _NamedCall(_MethodDesc):
    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name


_METHOD_DESC = _MethodDesc()


_BUILTIN_METHODS = frozenset(("__ray_ready__", "__ray_call__", "__ray_terminate__"))


class ActorHandle:
    def __init__(self, actor_id, meta, max_task_retries=0, owned=False, retry_exceptions=False,
                 policy=None):
        self._actor_id = actor_id
        self._meta = meta
        self._retries = max_task_retries
        self._retry_exc = retry_exceptions
        self._owned = owned
        self._methods = {}
        # (max_pending_calls, allow_out_of_order_execution), None: Ray's defaults
        self._policy = policy
        cw = ctx.core_worker
        if owned and cw is not None:
            cw.add_actor_handle(actor_id)
        if policy is not None and cw is not None:
            cw.actor_call_policy(actor_id, *policy)
        self._cw = cw if owned else None

    def __getattr__(self, name):
        if name.startswith("__") or name in ("_meta", "_methods", "_actor_id", "_policy"):
            if name in _BUILTIN_METHODS:
                # Ray's built-in methods: __ray_ready__(), __ray_call__(fn, *args)
                # (fn(actor_instance, *args) in the actor), __ray_terminate__()
                return ActorMethod(self, name, 1, 0)
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
            retry_exc = info.get("retry_exceptions")
            m = self._methods[name] = (
                info["num_returns"], self._retries if retries is None else retries,
                self._retry_exc if retry_exc is None else _unpack_retry_exceptions(retry_exc),
                None, arg_checker(info.get("sig")), None,
                info.get("enable_task_events") is False)
        return ActorMethod(self, name, *m)

    def __del__(self):
        cw = self._cw
        if cw is not None:
            cw.decref_q.append((self._actor_id,))

    def __reduce__(self):
        cw = self._cw
        if cw is not None:
            cw.actor_handle_escaped(self._actor_id)
        return (_rebuild_handle, (self._actor_id, self._meta, self._retries, self._retry_exc,
                                  self._policy))

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


def _rebuild_handle(actor_id, meta, retries, retry_exc=False, policy=None):
    return ActorHandle(actor_id, meta, retries, owned=False, retry_exceptions=retry_exc,
                       policy=policy)


def make_actor_class(cls, options):
    return ActorClass(cls, options)


def get_actor(name, namespace=None):
    if not isinstance(name, str):
        raise TypeError(f"get_actor() needs the actor's name as a string, got {name!r}")
    if not name:
        raise ValueError("Please supply a non-empty value to get_actor")
    _validate_name(None, namespace)
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
