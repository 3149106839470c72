"""Typed settings, read once from the environment (names as in CONTRACT.md)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Distance(StrEnum):
    COSINE = "cosine"
    DOT = "dot"
    EUCLID = "euclid"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    log_level: str = "INFO"
    # Request log lines and operation metrics are recorded, and log lines written, in
    # batches this often (README "Logs and metrics"); 0: each at once.
    log_flush_seconds: float = Field(default=0.2, ge=0, le=60)

    data_dir: Path = Path("./data")
    collection: str = "memories"
    vector_size: int = Field(default=384, ge=1, le=65536)
    distance: Distance = Distance.COSINE

    qdrant_url: str | None = None
    qdrant_api_key: SecretStr | None = None
    store_timeout_seconds: float = Field(default=10.0, gt=0)
    # Remote store only (README "Reliability"): retries of transient faults within the
    # timeout, calls in flight toward Qdrant, and calls allowed to wait for one of them.
    store_max_retries: int = Field(default=3, ge=0, le=10)
    store_max_concurrency: int = Field(default=64, ge=1)
    store_max_queue: int = Field(default=256, ge=0)

    # Embedded store: writes are refused (STORE_UNAVAILABLE) below this much free space
    # in DATA_DIR, because the engine dies of SIGBUS when a mapped file finds a full disk.
    min_free_disk_mb: int = Field(default=100, ge=0)

    # Unindexed points in the embedded store before a background index build starts.
    index_threshold: int = Field(default=20_000, ge=1)

    graphiql: bool = True
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    max_query_depth: int = Field(default=10, ge=1)
    max_aliases: int = Field(default=15, ge=1)
    max_tokens: int = Field(default=2_000, ge=10)
    max_directives: int = Field(default=10, ge=1)
    max_upsert_points: int = Field(default=1_000, ge=1)
    max_ids_per_request: int = Field(default=1_000, ge=1)
    shutdown_grace_seconds: float = Field(default=20.0, ge=0)
    # On SIGTERM: /readyz answers 503 this long, while requests are still served, first.
    shutdown_delay_seconds: float = Field(default=2.0, ge=0, le=300)

    # Security (README "Security"). Nothing set: open, one tenant `default`.
    auth_jwt_secret: SecretStr | None = None
    auth_jwt_public_key_file: Path | None = None
    auth_jwks_file: Path | None = None
    auth_jwt_issuer: str | None = None
    auth_jwt_audience: str | None = None
    auth_jwt_leeway_seconds: float = Field(default=10.0, ge=0, le=300)
    auth_api_keys_file: Path | None = None
    rate_limit: str | None = None
    rate_limit_storage_url: SecretStr | None = None
    graphql_introspection: bool = True
    cors_allow_origins: str = ""

    @field_validator(
        "auth_jwt_secret",
        "auth_jwt_public_key_file",
        "auth_jwks_file",
        "auth_jwt_issuer",
        "auth_jwt_audience",
        "auth_api_keys_file",
        "rate_limit",
        "rate_limit_storage_url",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """`VAR=` (as compose writes an unset ${VAR:-}) means not set, not "" or "."."""
        return None if value == "" else value

    # Instrumentation switches, so a benchmark can measure what each part costs.
    metrics_resolver_timing: bool = True
    metrics_http: bool = True
    metrics_store: bool = True
    metrics_operations: bool = True
