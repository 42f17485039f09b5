"""One typed configuration object for every part of veriframe.

Values come from three layers, later ones winning:

1. the defaults declared on :class:`Settings`;
2. the instance config file ``<instance>/config.toml`` (flat ``key = value`` pairs);
3. environment variables ``VERIFRAME_<KEY>`` (for example ``VERIFRAME_MAX_BYTES=1000000``).

The instance directory (``./instance`` unless ``VERIFRAME_INSTANCE`` says otherwise) also holds
the secrets: ``secrets.toml`` with the watermark keys, and later the signing identity. Every file
written there is created with mode 0600. Nothing here runs at import time.
"""

from __future__ import annotations

import dataclasses
import os
import secrets as _secrets
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from media.limits import MediaLimits

ENV_PREFIX = "VERIFRAME_"
# Conventional variables honoured as well; VERIFRAME_<KEY> still wins when both are set.
ENV_ALIASES = {"database_url": "DATABASE_URL", "broker_url": "CELERY_BROKER_URL"}
CONFIG_FILE = "config.toml"
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})
SECRETS_FILE = "secrets.toml"
SETTINGS_VERSION = 1


class ConfigError(ValueError):
    """A configuration value or file is malformed; the message names it."""


@dataclass(frozen=True)
class Settings:
    """Every tunable of a veriframe instance, with its default."""

    instance: Path = Path("instance")
    # Hard limits on any media we read (see media.limits.MediaLimits).
    max_bytes: int = 2 * 1024**3
    max_pixels: int = 3840 * 2160
    max_frames: int = 10 * 60 * 60
    max_duration_s: float = 10 * 60.0
    # Encoding of everything veriframe writes.
    encode_crf: int = 18
    encode_preset: str = "medium"
    # Watermark.
    watermark_psnr_db: float = 42.0
    watermark_detect_frames: int = 96
    watermark_p_threshold: float = 1e-6
    # Content Credentials: extra trust anchors (comma-separated PEM files), an allowed-EKU list,
    # and an optional RFC 3161 timestamp authority (signing is offline without one).
    trust_anchor_files: str = ""
    allowed_ekus_file: str = ""
    tsa_url: str = ""
    # Services. Empty means the embedded default inside the instance directory: SQLite
    # <instance>/veriframe.db, a Celery broker on SQLite <instance>/broker.db, artifacts under
    # <instance>/storage. DATABASE_URL and CELERY_BROKER_URL are read as aliases (see ENV_ALIASES).
    database_url: str = ""
    broker_url: str = ""
    storage_dir: str = ""
    # S3-compatible artifact storage (boto3), used instead of storage_dir when a bucket is set;
    # credentials come from boto3's usual chain (AWS_ACCESS_KEY_ID, ~/.aws, instance role).
    storage_s3_bucket: str = ""
    storage_s3_prefix: str = "veriframe/"
    storage_s3_endpoint_url: str = ""
    storage_s3_region: str = ""
    # Pipeline workers and jobs (see docs/deploy.md).
    worker_concurrency: int = 1
    worker_max_memory_per_child_kb: int = 3_000_000
    verify_time_limit_s: float = 600.0
    sign_time_limit_s: float = 1800.0
    generate_time_limit_s: float = 3600.0
    job_max_retries: int = 5
    job_max_attempts: int = 8
    job_heartbeat_s: float = 5.0
    job_stale_after_s: float = 60.0
    job_resend_after_s: float = 1800.0  # re-send a queued job not started this long after its send
    generator_entrypoint: str = "generator.cli:generate_to_file"
    generator_device: str = "auto"  # "auto": cuda when available, else cpu
    verify_detector: bool = True  # run the AI-origin detector in verify jobs (loads torch once per worker)
    # Web app and API (web/): upload cap per request, per-key and per-IP request rates (token
    # buckets: sustained requests per minute plus a burst), the longest ``wait`` a client may ask
    # for, and whether the portal's verify page works without an API key (for journalists).
    web_max_upload_bytes: int = 512 * 1024**2
    api_rate_per_minute: int = 120
    api_rate_burst: int = 30
    ip_rate_per_minute: int = 60
    api_max_wait_s: float = 30.0
    web_public_verify: bool = True
    api_batch_max_files: int = 20  # files one POST /verifications/batch may carry
    # Portal accounts: whether anyone may sign up on the login page ("auto": only on the embedded
    # single-machine default, i.e. when no database_url is set; true/false to decide), log-in and
    # sign-up attempts per client address (a token bucket), and whether the session cookie is
    # sent over HTTPS only (turn on behind TLS).
    web_signup: str = "auto"
    web_login_rate_per_minute: int = 10
    web_login_rate_burst: int = 5
    web_secure_cookies: bool = False
    # Webhooks (docs/webhooks.md): attempts per event and the first retry's delay (each later one
    # waits 3x longer: 30 s, 90 s, ... about an hour over 6 attempts), how long a receiver may take
    # to answer, and whether plain-http callbacks to loopback are allowed (tests, local development).
    webhook_max_attempts: int = 6
    webhook_retry_base_s: float = 30.0
    webhook_timeout_s: float = 10.0
    webhook_allow_http_loopback: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def media_limits(self) -> MediaLimits:
        return MediaLimits(
            max_bytes=self.max_bytes,
            max_pixels=self.max_pixels,
            max_frames=self.max_frames,
            max_duration_s=self.max_duration_s,
        )

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL with the driver veriframe ships (psycopg 3 for PostgreSQL); the
        instance's SQLite file when none is configured."""
        url = self.database_url.strip()
        if not url:
            return f"sqlite:///{(self.instance / 'veriframe.db').resolve()}"
        for prefix in ("postgres://", "postgresql://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix) :]
        return url

    @property
    def signup_open(self) -> bool:
        """Whether the portal lets visitors create accounts (see ``web_signup``)."""
        value = self.web_signup.strip().lower()
        if value == "auto":
            return not self.database_url.strip()
        return value in TRUE_WORDS

    @property
    def config_path(self) -> Path:
        return self.instance / CONFIG_FILE

    @property
    def secrets_path(self) -> Path:
        return self.instance / SECRETS_FILE


def _field_types() -> dict[str, type]:
    hints = typing.get_type_hints(Settings)
    return {f.name: hints[f.name] for f in dataclasses.fields(Settings) if f.name != "extra"}


def _coerce(name: str, raw: object, kind: type) -> object:
    """Turn a TOML value or an environment string into the field's declared type."""
    try:
        if kind is Path:
            return Path(str(raw))
        if kind is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in TRUE_WORDS:
                return True
            if text in FALSE_WORDS:
                return False
            raise ValueError(text)
        if kind is int:
            if isinstance(raw, bool):
                raise ValueError(raw)
            return int(str(raw).replace("_", ""))
        if kind is float:
            return float(raw)  # type: ignore[arg-type]
        if kind is str:
            return str(raw)
        if isinstance(kind, types.GenericAlias):
            raise ValueError("unsupported")
    except (TypeError, ValueError):
        raise ConfigError(f"setting {name!r}: cannot read {raw!r} as {kind.__name__}") from None
    raise ConfigError(f"setting {name!r}: unsupported type")


def default_instance_dir() -> Path:
    return Path(os.environ.get(ENV_PREFIX + "INSTANCE", "instance"))


def load_settings(instance: Path | str | None = None, env: typing.Mapping[str, str] | None = None) -> Settings:
    """Build the settings for ``instance`` (defaults < config.toml < VERIFRAME_* variables)."""
    env = os.environ if env is None else env
    inst = Path(instance) if instance is not None else Path(env.get(ENV_PREFIX + "INSTANCE", "instance"))
    kinds = _field_types()
    values: dict[str, object] = {"instance": inst}

    cfg = inst / CONFIG_FILE
    if cfg.is_file():
        try:
            data = tomllib.loads(cfg.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{cfg}: not valid TOML ({exc})") from None
        extra: dict[str, str] = {}
        for key, raw in data.items():
            if key in ("instance", "version"):
                continue
            if key in kinds:
                values[key] = _coerce(key, raw, kinds[key])
            else:
                extra[key] = str(raw)
        values["extra"] = extra

    for key, kind in kinds.items():
        if key == "instance":
            continue
        name = ENV_PREFIX + key.upper()
        if name in env:
            values[key] = _coerce(key, env[name], kind)
        elif ENV_ALIASES.get(key, "") in env:
            values[key] = _coerce(key, env[ENV_ALIASES[key]], kind)
    settings = Settings(**values)  # type: ignore[arg-type]
    _validate(settings)
    return settings


def _validate(s: Settings) -> None:
    for name in ("max_bytes", "max_pixels", "max_frames"):
        if getattr(s, name) <= 0:
            raise ConfigError(f"setting {name!r} must be positive")
    if s.max_duration_s <= 0:
        raise ConfigError("setting 'max_duration_s' must be positive")
    if not 0 <= s.encode_crf <= 51:
        raise ConfigError("setting 'encode_crf' must be within 0..51")
    if not 30.0 <= s.watermark_psnr_db <= 60.0:
        raise ConfigError("setting 'watermark_psnr_db' must be within 30..60 dB")
    if not 0 < s.watermark_p_threshold < 1:
        raise ConfigError("setting 'watermark_p_threshold' must be within (0, 1)")
    if s.watermark_detect_frames < 1:
        raise ConfigError("setting 'watermark_detect_frames' must be at least 1")
    for name in ("worker_concurrency", "job_max_attempts", "worker_max_memory_per_child_kb"):
        if getattr(s, name) < 1:
            raise ConfigError(f"setting {name!r} must be at least 1")
    if s.job_max_retries < 0:
        raise ConfigError("setting 'job_max_retries' must not be negative")
    for name in ("verify_time_limit_s", "sign_time_limit_s", "generate_time_limit_s", "job_heartbeat_s",
                 "job_resend_after_s"):
        if getattr(s, name) <= 0:
            raise ConfigError(f"setting {name!r} must be positive")
    for name in ("web_max_upload_bytes", "api_rate_per_minute", "api_rate_burst", "ip_rate_per_minute",
                 "api_batch_max_files", "webhook_max_attempts", "web_login_rate_per_minute", "web_login_rate_burst"):
        if getattr(s, name) < 1:
            raise ConfigError(f"setting {name!r} must be at least 1")
    for name in ("webhook_retry_base_s", "webhook_timeout_s"):
        if getattr(s, name) <= 0:
            raise ConfigError(f"setting {name!r} must be positive")
    if s.web_signup.strip().lower() not in TRUE_WORDS | FALSE_WORDS | {"auto"}:
        raise ConfigError("setting 'web_signup' must be auto, true or false")
    if s.api_max_wait_s < 0:
        raise ConfigError("setting 'api_max_wait_s' must not be negative")
    if s.job_stale_after_s <= 2 * s.job_heartbeat_s:
        raise ConfigError("setting 'job_stale_after_s' must exceed twice 'job_heartbeat_s'")


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600, atomically (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


_DEFAULT_CONFIG = f"""# veriframe instance configuration (settings version {SETTINGS_VERSION}).
# Any key of settings.Settings may be set here; VERIFRAME_<KEY> environment variables win.
version = {SETTINGS_VERSION}
# max_bytes = 2147483648
# max_pixels = 8294400
# max_duration_s = 600.0
# watermark_psnr_db = 42.0
"""


def init_instance(instance: Path | str | None = None) -> tuple[Path, list[str]]:
    """Create the instance directory, config and secrets if they are missing.

    Returns the directory and the names of the files created. Existing files are never
    overwritten, so running it twice is harmless.
    """
    inst = Path(instance) if instance is not None else default_instance_dir()
    created: list[str] = []
    inst.mkdir(parents=True, exist_ok=True)
    os.chmod(inst, 0o700)
    if not (inst / CONFIG_FILE).exists():
        write_private(inst / CONFIG_FILE, _DEFAULT_CONFIG)
        created.append(CONFIG_FILE)
    if not (inst / SECRETS_FILE).exists():
        from provenance.watermark.keys import new_keyring_toml

        write_private(inst / SECRETS_FILE, new_keyring_toml(_secrets.token_bytes(32)))
        created.append(SECRETS_FILE)
    from provenance.c2pa import ensure_dev_identity

    created += [f"signing/{name}" for name in ensure_dev_identity(inst)]
    return inst, created


def read_secrets(settings: Settings) -> dict[str, typing.Any]:
    """The parsed secrets file, created on first use."""
    if not settings.secrets_path.exists():
        init_instance(settings.instance)
    try:
        return tomllib.loads(settings.secrets_path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{settings.secrets_path}: not valid TOML ({exc})") from None
