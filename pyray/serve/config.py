"""Deployment, autoscaling and HTTP options: defaults and validation.

The defaults are Ray Serve 2.x's.  An option that pyray.serve does not
implement is refused with an error naming it (never accepted and ignored).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional

DEFAULT_MAX_ONGOING_REQUESTS = 5
DEFAULT_HTTP_HOST = "127.0.0.1"
DEFAULT_HTTP_PORT = 8000

# options Ray has that pyray.serve does not implement: refused by name
UNSUPPORTED_DEPLOYMENT_OPTIONS = (
    "placement_group_bundles", "placement_group_strategy",
    "placement_group_bundle_label_selector", "max_replicas_per_node", "logging_config",
    "request_router_config", "backpressure_config", "gang_scheduling_config",
    "deployment_actors", "rolling_update_percentage", "max_surge_percent")


@dataclasses.dataclass
class AutoscalingConfig:
    min_replicas: int = 1
    initial_replicas: Optional[int] = None
    max_replicas: int = 1
    target_ongoing_requests: float = 2.0
    metrics_interval_s: float = 10.0
    look_back_period_s: float = 30.0
    smoothing_factor: float = 1.0
    upscale_smoothing_factor: Optional[float] = None
    downscale_smoothing_factor: Optional[float] = None
    upscaling_factor: Optional[float] = None
    downscaling_factor: Optional[float] = None
    upscale_delay_s: float = 30.0
    downscale_delay_s: float = 600.0
    downscale_to_zero_delay_s: Optional[float] = None

    def __post_init__(self):
        def nonneg_int(name):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"autoscaling_config.{name} must be an integer >= 0, "
                                 f"got {v!r}")
        nonneg_int("min_replicas")
        nonneg_int("max_replicas")
        if self.initial_replicas is not None:
            nonneg_int("initial_replicas")
        if self.max_replicas < 1:
            raise ValueError("autoscaling_config.max_replicas must be >= 1, got "
                             f"{self.max_replicas}")
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"autoscaling_config: min_replicas ({self.min_replicas}) must "
                             f"be <= max_replicas ({self.max_replicas})")
        if self.initial_replicas is not None and not (
                self.min_replicas <= self.initial_replicas <= self.max_replicas):
            raise ValueError("autoscaling_config: initial_replicas must lie between "
                             "min_replicas and max_replicas, got "
                             f"{self.initial_replicas}")
        for name in ("target_ongoing_requests", "metrics_interval_s", "look_back_period_s",
                     "smoothing_factor"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"autoscaling_config.{name} must be a number > 0, got {v!r}")
        for name in ("upscale_delay_s", "downscale_delay_s", "downscale_to_zero_delay_s"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool)
                                  or v < 0):
                raise ValueError(f"autoscaling_config.{name} must be a number >= 0, "
                                 f"got {v!r}")

    @property
    def upscale_factor(self) -> float:
        return self.upscaling_factor or self.upscale_smoothing_factor or self.smoothing_factor

    @property
    def downscale_factor(self) -> float:
        return (self.downscaling_factor or self.downscale_smoothing_factor
                or self.smoothing_factor)

    def start_replicas(self) -> int:
        return self.min_replicas if self.initial_replicas is None else self.initial_replicas

    @classmethod
    def parse(cls, value) -> "AutoscalingConfig":
        if isinstance(value, AutoscalingConfig):
            return value
        if not isinstance(value, dict):
            raise TypeError(f"autoscaling_config must be a dict or AutoscalingConfig, got "
                            f"{type(value).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        bad = sorted(set(value) - known)
        if bad:
            raise ValueError(f"autoscaling_config: unknown or unsupported keys {bad}; "
                             f"known keys: {sorted(known)}")
        return cls(**value)


# num_replicas="auto": Ray's defaults for it
AUTO_DEFAULTS = {"min_replicas": 1, "max_replicas": 100, "target_ongoing_requests": 2.0}


@dataclasses.dataclass
class DeploymentConfig:
    num_replicas: Optional[int] = 1
    max_ongoing_requests: int = DEFAULT_MAX_ONGOING_REQUESTS
    max_queued_requests: int = -1
    user_config: Any = None
    autoscaling_config: Optional[AutoscalingConfig] = None
    graceful_shutdown_wait_loop_s: float = 2.0
    graceful_shutdown_timeout_s: float = 20.0
    health_check_period_s: float = 10.0
    health_check_timeout_s: float = 30.0
    max_constructor_retry_count: int = 3

    def validate(self):
        if self.autoscaling_config is None:
            n = self.num_replicas
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise ValueError(f"num_replicas must be an integer >= 0 or \"auto\", got {n!r}")
        for name in ("max_ongoing_requests", "max_constructor_retry_count"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        q = self.max_queued_requests
        if isinstance(q, bool) or not isinstance(q, int) or (q < 0 and q != -1):
            raise ValueError(f"max_queued_requests must be -1 (no limit) or an integer >= 0, "
                             f"got {q!r}")
        for name in ("graceful_shutdown_wait_loop_s", "graceful_shutdown_timeout_s",
                     "health_check_period_s", "health_check_timeout_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or (
                    name.startswith("health") and v == 0):
                raise ValueError(f"{name} must be a positive number, got {v!r}")
        return self

    def initial_target(self) -> int:
        if self.autoscaling_config is not None:
            return self.autoscaling_config.start_replicas()
        return self.num_replicas


def make_deployment_config(options: dict) -> DeploymentConfig:
    """A DeploymentConfig from @serve.deployment / .options() keyword arguments
    (only those given; the rest keep their defaults)."""
    fields = {f.name for f in dataclasses.fields(DeploymentConfig)}
    kw = {k: v for k, v in options.items() if k in fields}
    num = kw.get("num_replicas", 1)
    auto = kw.get("autoscaling_config")
    if num == "auto":
        merged = dict(AUTO_DEFAULTS)
        if auto is not None:
            merged.update(auto if isinstance(auto, dict) else dataclasses.asdict(auto))
        kw["autoscaling_config"] = AutoscalingConfig.parse(merged)
        kw["num_replicas"] = None
    elif auto is not None:
        if "num_replicas" in options and num is not None:
            raise ValueError("Manually setting num_replicas is not allowed when "
                             "autoscaling_config is provided: give one or the other (or "
                             "num_replicas=\"auto\").")
        kw["autoscaling_config"] = AutoscalingConfig.parse(auto)
        kw["num_replicas"] = None
    elif isinstance(num, str):
        raise ValueError(f"num_replicas must be an integer >= 0 or \"auto\", got {num!r}")
    return DeploymentConfig(**kw).validate()


@dataclasses.dataclass
class HTTPOptions:
    host: str = DEFAULT_HTTP_HOST
    port: int = DEFAULT_HTTP_PORT
    root_path: str = ""
    request_timeout_s: Optional[float] = None
    keep_alive_timeout_s: float = 5.0

    @classmethod
    def parse(cls, value) -> "HTTPOptions":
        if value is None:
            return cls()
        if isinstance(value, HTTPOptions):
            return value
        if not isinstance(value, dict):
            raise TypeError(f"http_options must be a dict or HTTPOptions, got "
                            f"{type(value).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        value = dict(value)
        loc = value.pop("location", "HeadOnly")
        if loc not in ("HeadOnly", None):
            raise ValueError(f"http_options location={loc!r} is not supported: pyray.serve "
                             "runs one HTTP proxy, on the head node (location=\"HeadOnly\").")
        bad = sorted(set(value) - known)
        if bad:
            raise ValueError(f"http_options: unknown or unsupported keys {bad}; known keys: "
                             f"{sorted(known)}")
        opts = cls(**value)
        if opts.request_timeout_s is not None:
            raise NotImplementedError("http_options request_timeout_s is not supported by "
                                      "pyray.serve yet (requests have no end-to-end timeout).")
        if opts.root_path:
            raise NotImplementedError("http_options root_path is not supported by "
                                      "pyray.serve.")
        if isinstance(opts.port, bool) or not isinstance(opts.port, int) or not (
                0 <= opts.port < 65536):
            raise ValueError(f"http_options port must be an integer 0..65535, got "
                             f"{opts.port!r}")
        return opts


def ceil_div(a: float, b: float) -> int:
    return int(math.ceil(a / b - 1e-9))
