"""DeploymentHandle, DeploymentResponse and DeploymentResponseGenerator.

A call goes from the caller straight to a replica actor (the router in
_router.py picks it); the response wraps the call's ObjectRef, or a future
of it while the request waits for a free replica.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import time
from typing import Any, Optional

import pyray
from pyray.exceptions import GetTimeoutError


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _check_sync_allowed(what):
    if _in_event_loop():
        raise RuntimeError(f"Sync methods should not be called from within an `asyncio` event "
                           f"loop. Use `await response` instead of `{what}`.")


class DeploymentHandle:
    """A handle to a deployment: `handle.remote(...)`, `handle.method.remote(...)`,
    `handle.options(method_name=..., stream=True)`."""

    def __init__(self, deployment_name: str, app_name: str = "default", *,
                 method_name: str = "__call__", stream: bool = False):
        self.deployment_name = deployment_name
        self.app_name = app_name
        self._method = method_name
        self._stream = stream
        self._router = None

    @property
    def deployment_id(self):
        from pyray.serve.context import DeploymentID
        return DeploymentID(self.deployment_name, self.app_name)

    def options(self, *, method_name: Optional[str] = None, stream: Optional[bool] = None,
                use_new_handle_api: bool = True, multiplexed_model_id: str = "",
                **unsupported) -> "DeploymentHandle":
        if unsupported:
            raise TypeError(f"DeploymentHandle.options() got unsupported options "
                            f"{sorted(unsupported)}; pyray.serve supports method_name and "
                            "stream.")
        if multiplexed_model_id:
            raise NotImplementedError("Model multiplexing is not supported by pyray.serve.")
        h = DeploymentHandle(self.deployment_name, self.app_name,
                             method_name=self._method if method_name is None else method_name,
                             stream=self._stream if stream is None else bool(stream))
        h._router = self._router
        return h

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return self.options(method_name=name)

    def remote(self, *args, **kwargs):
        router = self._router
        if router is None:
            from pyray.serve._client import client
            router = self._router = client().router((self.app_name, self.deployment_name))
        if _has_response(args, kwargs):
            out = _after_args(router, self._method, args, kwargs, 1 if self._stream else 0)
        else:
            out = router.assign(self._method, args, kwargs, 1 if self._stream else 0)
        if self._stream:
            return DeploymentResponseGenerator(out)
        return DeploymentResponse(out)

    def __reduce__(self):
        return (_rebuild_handle, (self.deployment_name, self.app_name, self._method,
                                  self._stream))

    def __repr__(self):
        return (f"DeploymentHandle(deployment='{self.deployment_name}', "
                f"app='{self.app_name}')")


def _rebuild_handle(name, app, method, stream):
    return DeploymentHandle(name, app, method_name=method, stream=stream)


def _has_response(args, kwargs):
    for a in args:
        if isinstance(a, DeploymentResponse):
            return True
    for a in kwargs.values():
        if isinstance(a, DeploymentResponse):
            return True
    return False


def _after_args(router, method, args, kwargs, mode):
    """Top-level DeploymentResponse arguments become their ObjectRefs (the
    replica gets their values); a call whose argument is still queued waits
    for it to be sent."""
    responses = [a for a in list(args) + list(kwargs.values())
                 if isinstance(a, DeploymentResponse)]
    waiting = [r._fut for r in responses if r._ref is None]

    def build():
        a = tuple(x._ref_now() if isinstance(x, DeploymentResponse) else x for x in args)
        k = {n: (x._ref_now() if isinstance(x, DeploymentResponse) else x)
             for n, x in kwargs.items()}
        return router.assign(method, a, k, mode)

    if not waiting:
        return build()
    outer = concurrent.futures.Future()
    left = [len(waiting)]

    def one_done(_f):
        left[0] -= 1
        if left[0]:
            return
        try:
            out = build()
        except Exception as e:  # noqa: BLE001 - delivered to the caller
            outer.set_exception(e)
            return
        if isinstance(out, concurrent.futures.Future):
            out.add_done_callback(lambda f: _copy_future(f, outer))
        else:
            outer.set_result(out)
    for f in waiting:
        f.add_done_callback(one_done)
    return outer


def _copy_future(src, dst):
    e = src.exception()
    if e is not None:
        dst.set_exception(e)
    else:
        dst.set_result(src.result())


class _Pending:
    """A response whose call is not sent yet (or whose ref is known).  What
    the router sent is a ref with its replica slot, or a generator."""
    __slots__ = ("_ref", "_fut", "_slot")

    def __init__(self, out):
        self._slot = None
        self._ref = None
        self._fut = None
        if isinstance(out, concurrent.futures.Future):
            self._fut = out
            if out.done() and out.exception() is None:
                self._set(out.result())
        else:
            self._set(out)

    def _set(self, out):
        if type(out) is tuple:
            self._ref, self._slot = out
        else:
            self._ref = out

    def _ref_now(self):
        if self._ref is None:
            self._set(self._fut.result(timeout=0))
        return self._ref

    def _wait_ref(self, deadline):
        if self._ref is None:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                self._set(self._fut.result(timeout=timeout))
            except concurrent.futures.TimeoutError:
                raise GetTimeoutError("Timed out waiting for a replica to take the "
                                      "request.") from None
        return self._ref

    async def _wait_ref_async(self):
        if self._ref is None:
            self._set(await asyncio.wrap_future(self._fut))
        return self._ref


class DeploymentResponse(_Pending):
    """The result of `handle.remote()`: `.result(timeout_s=)`, or `await` it."""
    __slots__ = ()

    def result(self, *, timeout_s: Optional[float] = None, _skip_asyncio_check=False) -> Any:
        if not _skip_asyncio_check:
            _check_sync_allowed("response.result()")
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        ref = self._wait_ref(deadline)
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            value = pyray.get(ref, timeout=timeout)
        except GetTimeoutError:
            raise
        except BaseException as e:
            if self._slot is not None:
                self._slot.release(e)
            raise
        if self._slot is not None:
            self._slot.release()     # the reply is here: its slot is free now
        return value

    def __await__(self):
        return self._await().__await__()

    async def _await(self):
        ref = await self._wait_ref_async()
        return await ref

    async def _to_object_ref(self):
        return await self._wait_ref_async()

    def _to_object_ref_sync(self, timeout_s: Optional[float] = None):
        _check_sync_allowed("response._to_object_ref_sync()")
        return self._wait_ref(None if timeout_s is None else time.monotonic() + timeout_s)

    def cancel(self):
        if self._ref is not None:
            pyray.cancel(self._ref)
        elif self._fut is not None:
            self._fut.cancel()


class DeploymentResponseGenerator(_Pending):
    """The result of a `stream=True` call: iterate it (sync or async)."""
    __slots__ = ()

    def __iter__(self):
        return self

    def __next__(self):
        _check_sync_allowed("next(response_generator)")
        g = self._wait_ref(None)
        try:
            ref = next(g.gen)
        except StopIteration:
            g.release()
            raise
        except BaseException as e:
            g.release(e)
            raise
        return pyray.get(ref)

    def __aiter__(self):
        return self

    async def __anext__(self):
        g = await self._wait_ref_async()
        try:
            ref = await g.gen.__anext__()
        except StopAsyncIteration:
            g.release()
            raise
        except BaseException as e:
            g.release(e)
            raise
        return await ref

    def cancel(self):
        if self._ref is not None:
            pyray.cancel(self._ref.gen)
