"""The service's limits: every size and count a client could push on it is bounded (configurable)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from mesatee.errors import InvalidArgumentError

__all__ = ["ServiceLimits"]


@dataclass(frozen=True)
class ServiceLimits:
    """``max_body``: bytes of a msgpack request body (a manifest, a grant, a policy...).
    ``max_upload``: bytes of one dataset. ``max_uploads``: upload sessions open on the node at once,
    ``max_uploads_per_party`` of them per party; ``upload_ttl``: seconds an idle session is kept.
    ``max_connections``: connections served at once (more get HTTP 503). ``threads``: node calls at once
    (each watch waits in one).
    """

    max_body: int = 16 << 20
    max_upload: int = 64 << 30
    max_uploads: int = 64
    max_uploads_per_party: int = 4
    upload_ttl: float = 24 * 3600.0
    max_connections: int = 1024
    threads: int = 256

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise InvalidArgumentError(f"{field.name} must be a positive number, not {value!r}")
