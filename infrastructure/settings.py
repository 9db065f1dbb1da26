"""Deploy-time settings, read from CDK context (`cdk.json` or `cdk synth -c key=value`).

Nothing here talks to AWS: synth works offline without credentials.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from constructs import Construct

REPO_ROOT = Path(__file__).resolve().parent.parent

CERT_MODES = ("aws", "own-ca")
IOT_LOG_LEVELS = ("ERROR", "WARN", "INFO", "DEBUG")


def _flag(value: object, default: bool) -> bool:
    """Context values are JSON from cdk.json but strings from `-c key=value`."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _text(value: object, default: str = "") -> str:
    return default if value is None else str(value)


def _ses_sender(value: object) -> str:
    sender = _text(value).strip()
    local, at, domain = sender.rpartition("@")
    if sender and (not at or not local or "." not in domain or any(ch in sender for ch in ' <>"')):
        raise ValueError(f"sesSender must be an email address verified in SES, not {sender!r}")
    return sender


def _positive(value: object, default: int, name: str) -> int:
    number = default if value is None or value == "" else int(str(value))
    if number <= 0:
        raise ValueError(f"{name} must be a positive whole number, not {value!r}")
    return number


@dataclass(frozen=True)
class Settings:
    bundle: bool = True  # install lambdas/requirements.txt into the function asset
    cert_mode: str = "aws"  # "aws": CreateCertificateFromCsr; "own-ca": the service's CA signs the CSR
    product_name: str = "Latchkey"
    logo_url: str = ""
    alarm_email: str = ""  # subscribed to the alarm topic when set
    log_retention_days: int = 30
    log_level: str = "INFO"  # LATCHKEY_LOG_LEVEL of the functions
    self_sign_up: bool = True
    iot_endpoint: str = ""  # "host:port"; empty: the functions call DescribeEndpoint(iot:Data-ATS)
    web_acl_arn: str = ""  # an existing WAFv2 web ACL (scope CLOUDFRONT, us-east-1) for the distribution
    web_dir: Path = REPO_ROOT / "web"
    # IoT Core logging is one setting per account and region: exactly one stack there may own it.
    iot_logging: bool = True
    iot_log_level: str = "WARN"  # WARN includes ERROR: failed connects and authorization denials
    ca_generation: int = 1  # own-CA mode: raise it to roll the CA over (docs/deploy.md)
    # Cognito's email through SES from this verified address ("" = Cognito's default sender, few a day)
    ses_sender: str = ""
    cert_validity_days: int = 365  # certificate lifetime: own-CA mode signs for it, AWS mode tracks it
    rotation_window_hours: int = 168  # how long a rotation may keep old and new certificate usable

    @classmethod
    def from_context(cls, scope: Construct) -> Settings:
        get = scope.node.try_get_context
        cert_mode = _text(get("certMode"), "aws")
        if cert_mode not in CERT_MODES:
            raise ValueError(f"certMode must be one of {CERT_MODES}, not {cert_mode!r}")
        web_dir = Path(_text(get("webDir"), "web"))
        iot_log_level = _text(get("iotLogLevel"), "WARN").upper()
        if iot_log_level not in IOT_LOG_LEVELS:
            raise ValueError(f"iotLogLevel must be one of {IOT_LOG_LEVELS}, not {iot_log_level!r}")
        return cls(
            bundle=_flag(get("bundle"), True),
            cert_mode=cert_mode,
            product_name=_text(get("productName"), "Latchkey"),
            logo_url=_text(get("logoUrl")),
            alarm_email=_text(get("alarmEmail")),
            log_retention_days=int(get("logRetentionDays") or 30),
            log_level=_text(get("logLevel"), "INFO").upper(),
            self_sign_up=_flag(get("selfSignUp"), True),
            iot_endpoint=_text(get("iotEndpoint")),
            web_acl_arn=_text(get("webAclArn")),
            web_dir=web_dir if web_dir.is_absolute() else REPO_ROOT / web_dir,
            iot_logging=_flag(get("iotLogging"), True),
            iot_log_level=iot_log_level,
            ca_generation=int(get("caGeneration") or 1),
            ses_sender=_ses_sender(get("sesSender")),
            cert_validity_days=_positive(get("certValidityDays"), 365, "certValidityDays"),
            rotation_window_hours=_positive(get("rotationWindowHours"), 168, "rotationWindowHours"),
        )
