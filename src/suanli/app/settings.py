"""Server settings, from arguments or SUANLI_* environment variables (never module globals)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_PORT = 8731


def default_home() -> Path:
    return Path(os.environ.get("SUANLI_HOME", str(Path.home() / ".suanli"))).expanduser()


@dataclass
class Settings:
    #: State directory: the SQLite file, workdir blobs, site tokens.
    home: Path = field(default_factory=default_home)
    #: Any SQLAlchemy URL; default SQLite in WAL mode at $SUANLI_HOME/suanli.db.
    database_url: str | None = field(default_factory=lambda: os.environ.get("SUANLI_DATABASE_URL"))
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    #: An attempt whose site has not reported it for this long is LOST.
    lease_s: float = 30.0
    #: How often agents should heartbeat when idle.
    heartbeat_s: float = 2.0
    #: Who issues the invoices (their "Issuer" line): the network operator's legal name.
    invoice_issuer: str = field(
        default_factory=lambda: os.environ.get("SUANLI_INVOICE_ISSUER", "suanli compute-power network operator")
    )
    #: Scheduler pass interval when nothing kicks it earlier.
    scheduler_interval_s: float = 1.0
    #: Largest workdir archive accepted, bytes.
    max_workdir_bytes: int = field(
        default_factory=lambda: int(float(os.environ.get("SUANLI_MAX_WORKDIR_MB", "100")) * 2**20)
    )
    #: Largest total size of a workdir archive once unpacked (a decompression-bomb guard), bytes.
    max_workdir_unpacked_bytes: int = field(
        default_factory=lambda: int(float(os.environ.get("SUANLI_MAX_WORKDIR_UNPACKED_MB", "1024")) * 2**20)
    )
    #: Largest job output (SUANLI_OUTPUT_DIR packed, and unpacked), bytes.
    max_output_bytes: int = field(
        default_factory=lambda: int(float(os.environ.get("SUANLI_MAX_OUTPUT_MB", "16384")) * 2**20)
    )
    #: How long workdirs and checkpoints are kept after their job ended (``app/blobs.py``).
    blob_retention_s: float = field(
        default_factory=lambda: float(os.environ.get("SUANLI_BLOB_RETENTION_DAYS", "7")) * 86400
    )
    #: Largest request body outside the workdir upload, bytes (413 beyond it).
    max_body_bytes: int = 4 * 2**20
    #: Requests per second each API token (or, without one, each client address) may sustain;
    #: 0 turns the API's rate limits off (tokens, users, addresses, failed sign-ins). /healthz
    #: and /metrics are never limited; the agent protocol has its own limit below.
    rate_limit_per_s: float = field(default_factory=lambda: float(os.environ.get("SUANLI_RATE_LIMIT", "100")))
    #: Requests a token may send at once above the sustained rate (the bucket's size).
    rate_limit_burst: int = field(default_factory=lambda: int(os.environ.get("SUANLI_RATE_BURST", "1000")))
    #: Requests per second one user may sustain with all its tokens together (members mint
    #: tokens freely, so a token's own bucket alone would not bound them), and its burst.
    user_rate_limit_per_s: float = field(default_factory=lambda: float(os.environ.get("SUANLI_USER_RATE_LIMIT", "200")))
    user_rate_limit_burst: int = field(default_factory=lambda: int(os.environ.get("SUANLI_USER_RATE_BURST", "2000")))
    #: Failed sign-ins (a token the network rejects) per second one client address may sustain,
    #: and its burst. Only failing requests draw on it and only they are refused beyond it: a
    #: valid token from the same address is served.
    auth_failure_rate_per_s: float = field(
        default_factory=lambda: float(os.environ.get("SUANLI_AUTH_FAILURE_RATE", "1"))
    )
    auth_failure_burst: int = field(default_factory=lambda: int(os.environ.get("SUANLI_AUTH_FAILURE_BURST", "60")))
    #: Requests per second each site agent token may sustain on /api/v1/agents/ (0: off), and
    #: its burst. An agent heartbeats every few seconds, so this bounds only a runaway one.
    agent_rate_limit_per_s: float = field(
        default_factory=lambda: float(os.environ.get("SUANLI_AGENT_RATE_LIMIT", "200"))
    )
    agent_rate_limit_burst: int = field(default_factory=lambda: int(os.environ.get("SUANLI_AGENT_RATE_BURST", "2000")))
    #: Requests per second each site agent token may sustain on the relay
    #: (/api/v1/agents/relay/, 0: off), and its burst: a bucket apart from the agent protocol's,
    #: since a copy at 1 GB/s in 4 MiB chunks is some 250 pushes a second, each side.
    relay_rate_limit_per_s: float = field(
        default_factory=lambda: float(os.environ.get("SUANLI_RELAY_RATE_LIMIT", "5000"))
    )
    relay_rate_limit_burst: int = field(default_factory=lambda: int(os.environ.get("SUANLI_RELAY_RATE_BURST", "20000")))
    #: Log streams (``logs?follow=true`` and the dashboard's live view) one tenant may hold open
    #: at once; one more gets 429 with Retry-After. A user without a tenant counts on its own.
    max_follows_per_tenant: int = field(default_factory=lambda: int(os.environ.get("SUANLI_MAX_FOLLOWS", "16")))
    #: Waive usage of attempts the platform lost or preempted (node fault, lost site, preemption).
    waive_platform_faults: bool = True
    #: Where workdir and checkpoint archives are kept: ``folder`` ($SUANLI_HOME/blobs) or
    #: ``database`` (a table every replica shares); None: ``database`` on PostgreSQL, ``folder``
    #: on SQLite (``app/blobstore.py``).
    blob_store: str | None = field(default_factory=lambda: os.environ.get("SUANLI_BLOB_STORE") or None)
    #: Fernet key(s) sealing job secrets (comma-separated: the first seals, all open); None:
    #: ``$SUANLI_HOME/server.key``, made on first use (see ``app/secrets.py``).
    secret_key: str | None = field(default_factory=lambda: os.environ.get("SUANLI_SECRET_KEY") or None, repr=False)

    #: The ledger's Ed25519 signing key, hex of its 32 raw bytes (every replica on one database
    #: needs the same); None: ``$SUANLI_HOME/datachain/keys/ledger-ed25519.key``, made on first use.
    ledger_key: str | None = field(default_factory=lambda: os.environ.get("SUANLI_LEDGER_KEY") or None, repr=False)

    def __post_init__(self) -> None:
        self.home = Path(self.home).expanduser()

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'suanli.db'}"

    @property
    def blob_dir(self) -> Path:
        return self.home / "blobs"

    @property
    def secret_key_path(self) -> Path:
        return self.home / "server.key"

    @property
    def token_dir(self) -> Path:
        return self.home / "tokens"
