"""Errors as OpenAI's API sends them: `{"error": {"message", "type", "param", "code"}}` with a status.

Every refusal the server makes is one of these, so a client library's own error
classes (the openai SDK's `BadRequestError`, `RateLimitError`, ...) see what they expect.
"""

from __future__ import annotations

from typing import Any

from ..errors import Flux2Int8Error

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error", 405: "invalid_request_error", 413: "invalid_request_error", 429: "rate_limit_error", 503: "server_error"}


class ApiError(Flux2Int8Error):
    """A refused request: its HTTP status, a message naming what is wrong, the field (`param`) and a code."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None, retry_after: int | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": _TYPES.get(self.status, "server_error"), "param": self.param, "code": self.code}}

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}


def bad_field(param: str, message: str, code: str = "invalid_value") -> ApiError:
    """400 for one field, the message starting with the field's name."""
    return ApiError(400, f"{param}: {message}", param=param, code=code)
