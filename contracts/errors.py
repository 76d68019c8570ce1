"""The one error type that crosses component boundaries: an OpenWhisk-style HTTP error."""

from __future__ import annotations


class WhiskError(Exception):
    """Rendered by the API as {"error": message, "code": <transaction id>} with this status."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}  # extra response headers (e.g. Allow on a 405)

    def to_dict(self) -> dict[str, object]:
        return {"status": self.status, "message": self.message}
