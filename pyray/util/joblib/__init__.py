"""joblib on the cluster.

    import joblib
    from pyray.util.joblib import register_ray

    register_ray()
    with joblib.parallel_backend("ray"):
        joblib.Parallel(n_jobs=-1)(joblib.delayed(f)(i) for i in range(100))

joblib is optional: register_ray() raises ImportError when it is missing.
"""


def register_ray():
    """Registers the joblib backend "ray" (a pyray.util.multiprocessing.Pool
    under joblib's multiprocessing backend)."""
    try:
        from joblib.parallel import register_parallel_backend
    except ImportError as err:
        raise ImportError("To use the ray backend you must install joblib: "
                          "pip install joblib") from err
    from pyray.util.joblib.ray_backend import RayBackend
    register_parallel_backend("ray", RayBackend)


__all__ = ["register_ray"]
