"""Map failures (engine, Serve, timeouts) to OpenAI-style HTTP errors."""

from __future__ import annotations

import asyncio
import logging

from starlette.responses import JSONResponse

from deployments.engines.base import EngineOverloadedError, EngineRequestError, EngineUnavailableError
from deployments.openai.protocol import OpenAIError

log = logging.getLogger(__name__)


def unwrap_error(error: BaseException) -> BaseException:
    """The user exception inside Ray's task-error wrappers (`RayTaskError.cause`)."""
    for _ in range(5):
        cause = getattr(error, "cause", None)
        if not isinstance(cause, BaseException):
            break
        error = cause
    return error


def is_replica_lost(error: BaseException) -> bool:
    """Whether `error` (possibly wrapped by Ray) means the replica serving the request went away."""
    from ray.exceptions import RayActorError
    from ray.serve.exceptions import DeploymentUnavailableError, ReplicaUnavailableError

    error = unwrap_error(error)
    if isinstance(error, (RayActorError, ReplicaUnavailableError, DeploymentUnavailableError)):
        return True
    # Handle calls travel over gRPC: a replica killed mid-call surfaces as UNAVAILABLE/CANCELLED.
    if type(error).__name__ != "AioRpcError":
        return False
    return getattr(error.code(), "name", "") in ("UNAVAILABLE", "CANCELLED", "UNKNOWN")


def to_openai_error(error: BaseException, retry_after_s: int) -> OpenAIError:
    """The HTTP error for `error`: 4xx for request problems, 429 for back-pressure, 503 with
    Retry-After for a replica that went away, 504 for time-outs, 500 (logged with its traceback)
    for anything else."""
    from ray.serve.exceptions import BackPressureError

    error = unwrap_error(error)
    if isinstance(error, OpenAIError):
        return error
    if isinstance(error, EngineRequestError):
        return OpenAIError(error.status_code, error.message, param=error.param, code=error.code)
    if isinstance(error, (BackPressureError, EngineOverloadedError)):
        return OpenAIError(
            429,
            "the model is at capacity; retry shortly",
            code="overloaded",
            headers={"Retry-After": str(retry_after_s)},
        )
    if isinstance(error, EngineUnavailableError):
        return OpenAIError(
            503, f"the model replica cannot serve: {error}", code="engine_unavailable",
            headers={"Retry-After": str(retry_after_s)},
        )  # fmt: skip
    if is_replica_lost(error):
        return OpenAIError(
            503,
            "the model replica serving this request went away; retry shortly",
            code="replica_unavailable",
            headers={"Retry-After": str(retry_after_s)},
        )
    if isinstance(error, asyncio.TimeoutError):
        return OpenAIError(504, "the request took longer than the server's time limit", code="timeout")
    log.error("request failed", exc_info=error)
    return OpenAIError(500, f"internal error: {type(error).__name__}", code="internal_error")


def error_response(error: OpenAIError) -> JSONResponse:
    """An OpenAI-style error response."""
    return JSONResponse(error.body(), status_code=error.status_code, headers=error.headers)
