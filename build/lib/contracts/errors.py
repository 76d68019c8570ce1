"""The one error type that crosses component boundaries: an OpenWhisk-style HTTP error."""

from __future__ import annotations


class WhiskError(Exception):
    """Rendered by the API as {"error": message, "code": <transaction id>} with this status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def to_dict(self) -> dict[str, object]:
        return {"status": self.status, "message": self.message}
