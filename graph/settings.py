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

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from graph.errors import ConfigError


class Distance(StrEnum):
    COSINE = "cosine"
    DOT = "dot"
    EUCLID = "euclid"


class Quantization(StrEnum):
    NONE = "none"
    SCALAR = "scalar"  # int8: a quarter of the vectors' memory, rescored with the originals


class VectorDatatype(StrEnum):
    FLOAT32 = "float32"
    FLOAT16 = "float16"  # half the memory and disk of the original vectors


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
    host: str = Field(default="127.0.0.1", description="address to listen on")
    port: int = Field(default=8000, ge=0, le=65535, description="port to listen on")
    graphiql: bool = Field(default=True, description="serve GraphiQL on GET /graphql")
    cors_allow_origins: str = Field(
        default="", description="comma-separated browser origins allowed; unset: none"
    )
    shutdown_grace_seconds: float = Field(
        default=20.0,
        ge=0,
        description="on SIGTERM, after the delay, how long in-flight requests get to finish",
    )
    shutdown_delay_seconds: float = Field(
        default=2.0,
        ge=0,
        le=300,
        description="on SIGTERM, how long /readyz answers 503 while requests are still served",
    )


class StoreSettings(_Group):
    data_dir: Path = Field(
        default=Path("./data"),
        description="where the embedded store keeps its files (one process per directory)",
    )
    collection: str = Field(
        default="memories", description="the default collection, created at start-up when missing"
    )
    vector_size: int = Field(
        default=384, ge=1, le=65536, description="dimension of the default collection"
    )
    distance: Distance = Field(
        default=Distance.COSINE, description="cosine, dot or euclid, for the default collection"
    )

    qdrant_url: str | None = Field(
        default=None,
        description=(
            "use a Qdrant server or cluster at this URL instead of the embedded store; "
            "path:<dir>: qdrant-client's local mode (no server; tests, migrate)"
        ),
    )
    qdrant_api_key: SecretStr | None = Field(
        default=None, description="API key of that Qdrant server (never logged)"
    )
    store_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description=(
            "deadline of one store operation on a Qdrant server, retries and queueing included"
        ),
    )
    # Remote store only (docs/reliability.md): retries of transient faults within the
    # timeout, calls in flight toward Qdrant, and calls allowed to wait for one of them.
    store_max_retries: int = Field(
        default=3,
        ge=0,
        le=10,
        description="Qdrant server: retries of a transient fault, with jittered backoff",
    )
    store_max_concurrency: int = Field(
        default=64, ge=1, description="Qdrant server: calls in flight toward it, per process"
    )
    store_max_queue: int = Field(
        default=256,
        ge=0,
        description="Qdrant server: calls that may wait for a slot; the rest get STORE_OVERLOADED",
    )

    # Embedded store: writes are refused (STORE_UNAVAILABLE) below this much free space
    # in DATA_DIR, because the engine dies of SIGBUS when a mapped file finds a full disk.
    # Backups keep it in BACKUP_DIR: refused, or stopped, below it (docs/backup.md).
    min_free_disk_mb: int = Field(
        default=100,
        ge=0,
        description=(
            "embedded store: below this free space in DATA_DIR, writes get STORE_UNAVAILABLE, "
            "and an index build that would go below it waits for room; backups are refused "
            "(or stopped) below it in BACKUP_DIR"
        ),
    )
    index_threshold: int = Field(
        default=20_000,
        ge=1,
        description="embedded store: new points before a background index build",
    )
    # Past this many unindexed points while a build runs, writes wait for the build
    # (STORE_UNAVAILABLE after a minute), so queries never search more than this many
    # points by brute force and indexing keeps up with ingest. At 1M points on 2 cores,
    # 50,000 holds a query's p99 under 50 ms during a sustained ingest (100,000: ~63 ms,
    # with ~40% more ingest; docs/benchmarks.md): queries first.
    index_backlog_max_points: int = Field(
        default=50_000,
        ge=1,
        description=(
            "embedded store: unindexed points while an index build runs; past it, "
            "writes wait for the build"
        ),
    )
    # Index builds cover only new points, each becoming an indexed segment; segments are
    # merged in the background up to this size (a merge's process holds the largest in
    # memory), and every query searches each one.
    index_merge_max_points: int = Field(
        default=200_000,
        ge=1,
        description="embedded store: indexed segments are merged up to this many points",
    )
    index_max_segments: int = Field(
        default=4,
        ge=1,
        description=(
            "embedded store: indexed segments past which merging comes before indexing new points"
        ),
    )
    # The engine searches and builds its HNSW graphs on int8 copies of the vectors and
    # rescores the best candidates with the originals, which stay on disk (mapped, read
    # on demand): index builds ~2.6x faster, a quarter of the vectors' memory, recall@10
    # unchanged on embedding-shaped data (docs/benchmarks.md). Applies to shards created
    # or indexed from then on.
    vector_quantization: Quantization = Field(
        default=Quantization.SCALAR,
        description=(
            "embedded store: scalar (int8 copies searched, originals on disk rescore) or none"
        ),
    )
    # Half precision halves the original vectors, the largest part of a store on disk and,
    # rescored from, of its working set in memory: at 1M points of 384 dims, 0.77 GB instead
    # of 1.5. Recall@10 0.999 against 1.000 on embedding-shaped data; vectors read back
    # are rounded to about three significant digits. Fixed for a vector shape when its
    # first collection is made (the engine cannot convert a shard in place).
    vector_datatype: VectorDatatype = Field(
        default=VectorDatatype.FLOAT32,
        description=(
            "embedded store: float32 or float16 original vectors, "
            "for vector shapes created from then on"
        ),
    )
    # Vector shapes (dimension and distance) in use at once, the default collection's
    # included: each is a physical collection with its own threads, mappings and files.
    max_vector_shapes: int = Field(
        default=8,
        ge=1,
        le=1_000,
        description=(
            "vector shapes (dimension, distance) in use "
            "at once; a new one past it is BAD_USER_INPUT"
        ),
    )
    # Where the `backup` mutation may write archives (docs/backup.md), and the points read
    # and written as one chunk of an archive.
    backup_dir: Path = Field(
        default=Path("./backups"),
        description="where the backup mutation writes archives; clients name only the file",
    )
    backup_page_points: int = Field(
        default=1_000,
        ge=1,
        le=10_000,
        description="points per page and per chunk of a backup, restore or migrate",
    )


class LimitSettings(_Group):
    """What one request may ask of the server (docs/security.md "Limits")."""

    max_body_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=1024,
        description="larger bodies get HTTP 413 PAYLOAD_TOO_LARGE before any parsing",
    )
    # A request's line and headers: past this size 431, past this time the connection
    # is closed; its body: past this time 408 (graph/serving.py; uvicorn bounds none).
    max_header_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        le=16 * 1024 * 1024,
        description="a larger request line and headers get HTTP 431 and the connection closed",
    )
    header_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="request line and headers slower than this to arrive: the connection is closed",
    )
    body_timeout_seconds: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="a request body slower than this to arrive after its headers: HTTP 408 "
        "REQUEST_TIMEOUT and the connection closed",
    )
    max_query_depth: int = Field(
        default=10, ge=1, description="deepest selection a document may have"
    )
    max_aliases: int = Field(default=15, ge=1, description="aliases per document")
    max_tokens: int = Field(
        default=2_000, ge=10, description="tokens per document; send big inputs as variables"
    )
    max_directives: int = Field(default=10, ge=1, description="directives per document")
    max_upsert_points: int = Field(
        default=1_000, ge=1, description="points per upsert, memories per remember"
    )
    max_ids_per_request: int = Field(
        default=1_000, ge=1, description="ids per points, delete, memories or forget"
    )
    # Points (or memories) one operation may return over all its root fields: with the
    # per-payload bound of the store's models it bounds the response (docs/hardening.md).
    max_points_per_request: int = Field(
        default=1_000,
        ge=1,
        description="points or memories one operation may return, all fields together",
    )
    graphql_introspection: bool = Field(
        default=True, description='false turns off introspection and "Did you mean" suggestions'
    )


class AuthSettings(_Group):
    """Credentials and rate limits (docs/security.md). Nothing set: open, one tenant."""

    auth_jwt_secret: SecretStr | None = Field(
        default=None,
        description="accept HS256 JWTs signed with this secret (32 bytes or more; never logged)",
    )
    auth_jwt_public_key_file: Path | None = Field(
        default=None, description="accept RS256 or ES256 JWTs verified with this PEM public key"
    )
    auth_jwks_file: Path | None = Field(
        default=None,
        description="accept RS256 or ES256 JWTs verified with a key of this JWKS file (by kid)",
    )
    auth_jwt_issuer: str | None = Field(
        default=None, description="when set, JWTs must carry this iss"
    )
    auth_jwt_audience: str | None = Field(
        default=None,
        description=(
            "when set, JWTs must carry this aud (when unset, a token with an aud is refused)"
        ),
    )
    auth_jwt_leeway_seconds: float = Field(
        default=10.0, ge=0, le=300, description="clock skew allowed on exp, nbf and iat"
    )
    auth_api_keys_file: Path | None = Field(
        default=None, description="accept the API keys in this file (made by `graph keys`)"
    )
    rate_limit: str | None = Field(
        default=None, description="per-tenant rate, e.g. 100/second or 5000/minute; unset: no limit"
    )
    rate_limit_storage_url: SecretStr | None = Field(
        default=None,
        description=(
            "redis://host:6379/0: one budget per tenant shared by all replicas (never logged)"
        ),
    )


class MemorySettings(_Group):
    """Text memories: the embedder, text size and expiry (README "Memories")."""

    # Unset: no server-side embeddings. `fastembed:<model>` or `openai:<model>`.
    embedder: str | None = Field(
        default=None,
        description=(
            "fastembed:<model> (local ONNX) or "
            "openai:<model>; unset: keyword recall and client vectors"
        ),
    )
    embed_url: str | None = Field(
        default=None,
        description="base URL of the OpenAI-compatible API (POST {EMBED_URL}/embeddings)",
    )
    embed_api_key: SecretStr | None = Field(
        default=None, description="bearer key for that API (never logged)"
    )
    embed_model_path: Path | None = Field(
        default=None, description="fastembed: the model files, instead of fetching them once"
    )
    embed_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="how long one embedding call may take before EMBEDDER_UNAVAILABLE",
    )
    max_memory_text_bytes: int = Field(
        default=32 * 1024,
        ge=1,
        le=1024 * 1024,
        description=(
            "longest memory text in bytes as JSON (UTF-8, quotes, backslashes and control "
            "characters escaped); longer is BAD_USER_INPUT"
        ),
    )
    ttl_sweep_seconds: float = Field(
        default=60.0, gt=0, le=86_400, description="how often expired memories are deleted"
    )


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class TelemetrySettings(_Group):
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR")

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return level

    # Request log lines and operation metrics are recorded, and log lines written, in
    # batches this often (docs/operating.md "Logs"); 0: each at once.
    log_flush_seconds: float = Field(
        default=0.2,
        ge=0,
        le=60,
        description="log lines and operation metrics are written in batches this often; 0: at once",
    )
    # Instrumentation switches, so the benchmark can measure what each part costs.
    metrics_resolver_timing: bool = Field(
        default=True, description="time resolvers into graphql_resolver_duration_seconds"
    )
    metrics_http: bool = Field(default=True, description="the http_* metrics")
    metrics_store: bool = Field(default=True, description="the store_* metrics")
    metrics_operations: bool = Field(default=True, description="record the operation metrics")


def _shown_default(value: object) -> str:
    if value is None or value == "":
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, Path) and not value.is_absolute():
        return f"./{value}"
    return str(value)


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
    def from_environment(cls) -> Settings:
        """The settings of the environment; a value that is not valid is a ConfigError
        naming each variable (`DISTANCE: Input should be 'cosine', 'dot' or 'euclid'`)."""
        try:
            return cls()
        except ValidationError as exc:
            raise ConfigError(
                "; ".join(
                    f"{'.'.join(map(str, error['loc'])).upper()}: {error['msg']}"
                    for error in exc.errors()
                )
            ) from None

    @classmethod
    def names(cls) -> list[str]:
        """Every setting's flat name, as its environment variable in lower case."""
        return [name for group in cls.GROUPS.values() for name in group.model_fields]

    @classmethod
    def described(cls) -> list[tuple[str, str, str]]:
        """Every setting as (environment variable, default as one would set it, meaning)."""
        return [
            (name.upper(), _shown_default(field.default), field.description or "")
            for group in cls.GROUPS.values()
            for name, field in group.model_fields.items()
        ]

    def __repr__(self) -> str:
        groups = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.GROUPS)
        return f"Settings({groups})"
