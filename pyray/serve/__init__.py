"""pyray.serve: model serving over HTTP and handles, as Ray Serve.

    from pyray import serve

    @serve.deployment(num_replicas=2)
    class Model:
        def __call__(self, request):
            return {"ok": True}

    handle = serve.run(Model.bind())

Needs the optional extra: pip install "pyray[serve]" (starlette, uvicorn,
fastapi).  See docs/serve.md.
"""
try:
    import starlette  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(f'pyray.serve needs {e.name}: pip install "pyray[serve]"') from e

from pyray.serve.api import (delete, get_app_handle, get_deployment_handle, run, shutdown,
                             start, status)
from pyray.serve.batching import batch
from pyray.serve.config import AutoscalingConfig, DeploymentConfig, HTTPOptions
from pyray.serve.context import get_replica_context
from pyray.serve.deployment import Application, Deployment, deployment, ingress
from pyray.serve.handle import (DeploymentHandle, DeploymentResponse,
                                DeploymentResponseGenerator)



def multiplexed(*args, **kwargs):
    """Model multiplexing is not provided by pyray.serve."""
    raise NotImplementedError("@serve.multiplexed (model multiplexing) is not supported by "
                              "pyray.serve (docs/serve.md).")


def get_multiplexed_model_id():
    raise NotImplementedError("serve.get_multiplexed_model_id() (model multiplexing) is not "
                              "supported by pyray.serve (docs/serve.md).")


__all__ = ["Application", "AutoscalingConfig", "Deployment", "DeploymentConfig",
           "DeploymentHandle", "DeploymentResponse", "DeploymentResponseGenerator",
           "HTTPOptions", "batch", "delete", "deployment", "get_app_handle",
           "get_deployment_handle", "get_multiplexed_model_id", "get_replica_context",
           "ingress", "multiplexed", "run", "shutdown",
           "start", "status"]
