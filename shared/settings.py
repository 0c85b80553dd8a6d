"""The one settings class. Every value can be set with a `POSTFORDELER_` environment variable."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEMO_TENANT_DIR = Path(__file__).resolve().parent.parent / "postfordeler" / "demo" / "tenant"


class Settings(BaseSettings):
    """Runtime configuration. Defaults give the embedded mode: SQLite, in-process bus."""

    model_config = SettingsConfigDict(env_prefix="POSTFORDELER_", extra="ignore", frozen=True)

    data_dir: Path = Field(Path("var"), description="Where the SQLite file, blobs and outbox live.")
    database_url: SecretStr | None = Field(
        None, description="SQLAlchemy async URL; default a SQLite file under data_dir."
    )
    amqp_url: SecretStr = Field(
        SecretStr("memory://"), description="amqp://user:pass@host/vhost or memory://"
    )
    exchange: str = "postfordeler"
    blob_dir: Path | None = None
    tenant_dir: Path = DEMO_TENANT_DIR
    model_dir: Path | None = Field(
        None, description="Routing model directory (postfordeler train); none: rules only.")
    rules_refresh: float = Field(
        5.0, description="Seconds the router keeps the active rule set before checking the "
                         "database for a newer version (0: check on every item).")
    rule_regex_timeout: float = Field(
        0.05, description="Seconds a rule's regular expression may run on one item.")
    # The web interface (/ui): its session cookie is signed with this secret. Unset, each
    # process makes a random one (sessions end on restart and are not shared by replicas).
    ui_session_secret: SecretStr | None = None
    ui_session_hours: float = Field(8.0, description="Hours a /ui sign-in lasts.")
    ui_secure_cookie: bool = Field(False, description="Mark the /ui cookie Secure (HTTPS).")

    # SMTP for receipts. No host: receipts are written as .eml files to outbox_dir instead.
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    # PEM file of the CA(s) to trust for the SMTP server's certificate; unset: the system's.
    smtp_ca_file: Path | None = None
    smtp_timeout: float = 30.0
    outbox_dir: Path | None = None
    # Receipts that SMTP could not take wait and are retried with doubling delays from
    # receipt_retry_base up to receipt_retry_max_delay, receipt_max_attempts times in all.
    receipt_retry_base: float = 30.0
    receipt_retry_max_delay: float = 3600.0
    receipt_max_attempts: int = 12
    receipt_sweep_interval: float = 10.0
    esdh_timeout: float = Field(30.0, description="Seconds per ESDH HTTP call.")
    retention_days: int | None = Field(
        None, description="Delete message content (blobs, text) this many days after an item "
                          "reached a final state; audit entries stay. None keeps everything.")
    retention_interval: float = 3600.0

    poll_interval: float = Field(10.0, description="Seconds between mailbox polls.")
    ingest_concurrency: int = Field(8, description="Messages a mailbox poll handles at once.")

    # Extraction limits (decompression and zip bombs) and OCR. Parsing of attachments and
    # scans runs in extract_workers worker processes, each with an address-space limit of
    # extract_worker_memory_mb and a time limit per job; a file over a limit fails with a reason.
    extract_workers: int = Field(2, description="Worker processes for parsing and OCR.")
    extract_worker_memory_mb: int = Field(2048, description="Address-space limit per worker.")
    extract_timeout: float = Field(60.0, description="Seconds per parse job (one mail, one file).")
    ocr_page_timeout: float = Field(90.0, description="Seconds to OCR one page.")
    ocr_languages: str = Field("dan+eng", description="Tesseract languages.")
    ocr_dpi: int = Field(300, description="Resolution PDF pages are rasterised at for OCR.")
    max_file_bytes: int = Field(50 * 2**20, description="Largest mail, scan or attachment.")
    max_pages: int = Field(200, description="Most pages of one document, and pages OCR'd per item.")
    max_pixels: int = Field(120_000_000, description="Most pixels of one image or page.")
    archive_max_members: int = Field(500, description="Most files in one archive.")
    archive_max_bytes: int = Field(200 * 2**20, description="Most bytes unpacked per item.")
    archive_max_ratio: int = Field(200, description="Largest compression ratio of a member.")
    archive_max_depth: int = Field(3, description="Archives inside archives, at most.")
    # The scan drop folder: files are taken in once their size and mtime held still between
    # two looks, then moved to scan_archive_dir (or scan_error_dir with a .reason.txt file).
    scan_dir: Path | None = Field(None, description="Folder the scanner delivers to.")
    scan_archive_dir: Path | None = Field(None, description="Default <scan_dir>/Behandlet.")
    scan_error_dir: Path | None = Field(None, description="Default <scan_dir>/Fejl.")
    scan_interval: float = Field(2.0, description="Seconds between looks at the scan folder.")
    scan_mailbox: str = Field("scan", description="Name scanned items carry as their mailbox.")
    prefetch: int = 32
    retry_max_attempts: int = Field(5, description="Handler attempts before dead-lettering.")
    retry_base_delay: float = Field(0.5, description="First back-off delay, doubled each time.")
    retry_max_delay: float = 30.0
    delivery_limit: int = Field(10, description="Broker redeliveries before a dead letter.")

    reconcile_interval: float = 30.0
    stuck_after: float = Field(120.0, description="Seconds in one state before re-publishing.")
    reconcile_max_attempts: int = 3
    relay_interval: float = 2.0
    audit_chain_interval: float = Field(0.2, description="Seconds between audit chaining runs.")
    db_pool_size: int = Field(5, description="PostgreSQL connections kept per process.")
    db_max_overflow: int = Field(10, description="Extra connections per process under load.")

    # Access control. OIDC bearer tokens are accepted when oidc_issuer is set: the token's
    # signature is checked against the issuer's JWKS (oidc_jwks_url, else discovered from
    # <issuer>/.well-known/openid-configuration), and roles/units/forms come from claims.
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = None
    oidc_algorithms: tuple[str, ...] = ("RS256", "ES256")
    oidc_roles_claim: str = "roles"
    oidc_units_claim: str = "units"
    oidc_forms_claim: str = "forms"
    oidc_name_claim: str = "preferred_username"
    oidc_leeway: float = Field(30.0, description="Seconds of clock skew allowed on exp/nbf.")
    oidc_jwks_cooldown: float = Field(10.0, description="Least seconds between JWKS refetches "
                                                        "for an unknown key id (rotation).")
    # Sign-in to /ui with the issuer (authorization code flow with PKCE) needs a client
    # registered there with redirect URI <base>/ui/login/oidc/callback.
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None

    # Delivery to units and operations alerts (sent through the SMTP settings above).
    delivery_from: str | None = Field(None, description="From address of forwarded items; "
                                                        "default the main mailbox.")
    ops_alert_to: str | None = Field(None, description="Operations address for alert e-mails.")
    ops_alert_interval: float = Field(3600.0, description="At most one alert e-mail of each "
                                                          "kind per this many seconds.")
    ops_check_interval: float = Field(60.0, description="Seconds between operations checks.")
    ops_mailbox_down_after: float = Field(900.0, description="Alert when a mailbox has been "
                                                             "unreachable this many seconds.")
    ops_dlq_threshold: int = Field(0, description="Alert when a dead-letter queue holds more "
                                                  "than this many messages and has grown.")

    api_host: str = "127.0.0.1"
    api_port: int = 8080
    metrics_port: int | None = Field(
        None, description="Port of a worker process's /health/live, /health/ready and /metrics.")
    cpr_key: SecretStr | None = Field(
        None, description="Secret for CPR fingerprints (an auditor's CPR query needs it); "
                          "keep it stable: changing it hides earlier items from the query.")
    log_level: str = "INFO"
    log_format: str = Field("json", description="json or console")

    @cached_property
    def db_url(self) -> str:
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite+aiosqlite:///{(self.data_dir / 'postfordeler.db').resolve()}"

    @cached_property
    def blobs_path(self) -> Path:
        return self.blob_dir or self.data_dir / "blobs"

    @cached_property
    def outbox_path(self) -> Path:
        return self.outbox_dir or self.data_dir / "outbox"

    @property
    def in_process_bus(self) -> bool:
        return self.amqp_url.get_secret_value().startswith("memory://")
