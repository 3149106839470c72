"""Typed settings, read once from the environment, one group per concern.

Every setting is an environment variable of the same name in upper case (as in
CONTRACT.md and the README's settings table); the groups only decide where the code
finds it: `settings.store.data_dir`, `settings.limits.max_tokens`. `Settings(**values)`
takes any setting by its flat name and hands it to its group, which is how tests and
the benchmark override one.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Distance(StrEnum):
    COSINE = "cosine"
    DOT = "dot"
    EUCLID = "euclid"


class _Group(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object, info: ValidationInfo) -> object:
        """`VAR=` (as compose writes an unset ${VAR:-}) means not set, not "" or ".",
        for every optional setting."""
        field = cls.model_fields[str(info.field_name)]
        return None if value == "" and field.default is None else value


class ServerSettings(_Group):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    graphiql: bool = True
    cors_allow_origins: str = ""
    shutdown_grace_seconds: float = Field(default=20.0, ge=0)
    # On SIGTERM: /readyz answers 503 this long, while requests are still served, first.
    shutdown_delay_seconds: float = Field(default=2.0, ge=0, le=300)


class StoreSettings(_Group):
    data_dir: Path = Path("./data")
    collection: str = "memories"
    vector_size: int = Field(default=384, ge=1, le=65536)
    distance: Distance = Distance.COSINE

    qdrant_url: str | None = None
    qdrant_api_key: SecretStr | None = None
    store_timeout_seconds: float = Field(default=10.0, gt=0)
    # Remote store only (docs/reliability.md): retries of transient faults within the
    # timeout, calls in flight toward Qdrant, and calls allowed to wait for one of them.
    store_max_retries: int = Field(default=3, ge=0, le=10)
    store_max_concurrency: int = Field(default=64, ge=1)
    store_max_queue: int = Field(default=256, ge=0)

    # Embedded store: writes are refused (STORE_UNAVAILABLE) below this much free space
    # in DATA_DIR, because the engine dies of SIGBUS when a mapped file finds a full disk.
    min_free_disk_mb: int = Field(default=100, ge=0)
    # Unindexed points in the embedded store before a background index build starts.
    index_threshold: int = Field(default=20_000, ge=1)
    # Vector shapes (dimension and distance) in use at once, the default collection's
    # included: each is a physical collection with its own threads, mappings and files.
    max_vector_shapes: int = Field(default=8, ge=1, le=1_000)
    # Where the `backup` mutation may write archives (docs/backup.md), and the points read
    # and written as one chunk of an archive.
    backup_dir: Path = Path("./backups")
    backup_page_points: int = Field(default=1_000, ge=1, le=10_000)


class LimitSettings(_Group):
    """What one request may ask of the server (docs/security.md "Limits")."""

    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    # A request's line and headers: past this size 431, past this time the connection
    # is closed (graph/serving.py; uvicorn bounds neither).
    max_header_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    header_timeout_seconds: float = Field(default=10.0, gt=0, le=3600)
    max_query_depth: int = Field(default=10, ge=1)
    max_aliases: int = Field(default=15, ge=1)
    max_tokens: int = Field(default=2_000, ge=10)
    max_directives: int = Field(default=10, ge=1)
    max_upsert_points: int = Field(default=1_000, ge=1)
    max_ids_per_request: int = Field(default=1_000, ge=1)
    # Points (or memories) one operation may return over all its root fields: with the
    # per-payload bound of the store's models it bounds the response (docs/hardening.md).
    max_points_per_request: int = Field(default=1_000, ge=1)
    graphql_introspection: bool = True


class AuthSettings(_Group):
    """Credentials and rate limits (docs/security.md). Nothing set: open, one tenant."""

    auth_jwt_secret: SecretStr | None = None
    auth_jwt_public_key_file: Path | None = None
    auth_jwks_file: Path | None = None
    auth_jwt_issuer: str | None = None
    auth_jwt_audience: str | None = None
    auth_jwt_leeway_seconds: float = Field(default=10.0, ge=0, le=300)
    auth_api_keys_file: Path | None = None
    rate_limit: str | None = None
    rate_limit_storage_url: SecretStr | None = None


class MemorySettings(_Group):
    """Text memories: the embedder, text size and expiry (README "Memories")."""

    # Unset: no server-side embeddings. `fastembed:<model>` or `openai:<model>`.
    embedder: str | None = None
    embed_url: str | None = None
    embed_api_key: SecretStr | None = None
    embed_model_path: Path | None = None
    embed_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    max_memory_text_bytes: int = Field(default=32 * 1024, ge=1, le=1024 * 1024)
    ttl_sweep_seconds: float = Field(default=60.0, gt=0, le=86_400)


class TelemetrySettings(_Group):
    log_level: str = "INFO"
    # Request log lines and operation metrics are recorded, and log lines written, in
    # batches this often (docs/operating.md "Logs"); 0: each at once.
    log_flush_seconds: float = Field(default=0.2, ge=0, le=60)
    # Instrumentation switches, so the benchmark can measure what each part costs.
    metrics_resolver_timing: bool = True
    metrics_http: bool = True
    metrics_store: bool = True
    metrics_operations: bool = True


class Settings:
    """Every group, read from the environment; keyword arguments override by flat name."""

    GROUPS: ClassVar[dict[str, type[_Group]]] = {
        "server": ServerSettings,
        "store": StoreSettings,
        "limits": LimitSettings,
        "auth": AuthSettings,
        "memory": MemorySettings,
        "telemetry": TelemetrySettings,
    }

    server: ServerSettings
    store: StoreSettings
    limits: LimitSettings
    auth: AuthSettings
    memory: MemorySettings
    telemetry: TelemetrySettings

    def __init__(self, **overrides: Any) -> None:
        unknown = set(overrides) - set(self.names())
        if unknown:
            raise TypeError(f"Unknown settings: {', '.join(sorted(unknown))}")
        for name, group in self.GROUPS.items():
            own = {k: v for k, v in overrides.items() if k in group.model_fields}
            setattr(self, name, group(**own))

    @classmethod
    def names(cls) -> list[str]:
        """Every setting's flat name, as its environment variable in lower case."""
        return [name for group in cls.GROUPS.values() for name in group.model_fields]

    def __repr__(self) -> str:
        groups = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.GROUPS)
        return f"Settings({groups})"
