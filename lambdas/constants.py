"""Names shared by the CDK stack, the handlers, the local cloud and the CLI.

Kept free of imports so that the device poll path can read it at no cost.
"""

# Environment variables the stack sets on every function (and the local cloud sets in-process).
ENV_DEVICES_TABLE = "LATCHKEY_DEVICES_TABLE"
ENV_PENDING_TABLE = "LATCHKEY_PENDING_TABLE"
ENV_AUDIT_TABLE = "LATCHKEY_AUDIT_TABLE"
ENV_RATE_LIMITS_TABLE = "LATCHKEY_RATE_LIMITS_TABLE"
ENV_GRANTS_TABLE = "LATCHKEY_GRANTS_TABLE"  # shares and transfer offers
ENV_SECRETS_ARN = "LATCHKEY_SECRETS_ARN"  # JSON secret: claim-code HMAC key, optional own-CA key pair
ENV_CERT_MODE = "LATCHKEY_CERT_MODE"  # "aws" (CreateCertificateFromCsr) or "own-ca"
ENV_IOT_POLICY_NAME = "LATCHKEY_IOT_POLICY_NAME"
ENV_THING_TYPE_NAME = "LATCHKEY_THING_TYPE_NAME"
ENV_IOT_ENDPOINT = "LATCHKEY_IOT_ENDPOINT"  # "host:port"; empty on AWS means DescribeEndpoint(iot:Data-ATS)
ENV_CA_PEM = "LATCHKEY_CA_PEM"  # CA chain handed to devices to verify the broker
ENV_USER_POOL_ID = "LATCHKEY_USER_POOL_ID"
ENV_USER_POOL_CLIENT_ID = "LATCHKEY_USER_POOL_CLIENT_ID"
ENV_MQTT_BRIDGE = "LATCHKEY_MQTT_BRIDGE"  # local only: where the embedded cloud's MQTT publisher listens
ENV_PRODUCT_NAME = "LATCHKEY_PRODUCT_NAME"
ENV_CERT_VALIDITY_DAYS = "LATCHKEY_CERT_VALIDITY_DAYS"  # certificate lifetime the stack configures
ENV_ROTATION_WINDOW_HOURS = "LATCHKEY_ROTATION_WINDOW_HOURS"  # how long old + new certificate may overlap

# Device ids: "lk-" + 16 lowercase Crockford chars; the IAM policies of the stack scope thing ARNs to this prefix.
DEVICE_ID_PREFIX = "lk-"

# Table attribute names.
DEVICE_PK = "deviceId"
DEVICE_OWNER_INDEX = "byOwner"
DEVICE_OWNER_KEY = "ownerId"
DEVICE_CLAIM_CODE_INDEX = "byClaimCode"
DEVICE_CLAIM_CODE_KEY = "claimCodeHash"
PENDING_PK = "pendingId"
PENDING_OWNER_INDEX = "byOwner"
PENDING_OWNER_KEY = "ownerId"
PENDING_TOKEN_INDEX = "byTokenHash"
PENDING_TOKEN_KEY = "tokenHash"
AUDIT_PK = "deviceId"
AUDIT_SK = "eventKey"  # "<iso timestamp>#<random>" so events sort by time
RATE_LIMIT_PK = "limitKey"
GRANT_PK = "deviceId"
GRANT_SK = "grantKey"  # "share#<user id>" or "transfer"
GRANT_USER_INDEX = "byUser"
GRANT_USER_KEY = "userId"  # the member, or the recipient of an offer
GRANT_SENDER_INDEX = "bySender"
GRANT_SENDER_KEY = "senderId"  # the owner who made an offer
TTL_ATTRIBUTE = "expiresAt"

# Device states (design.md "Device states").
STATE_UNCLAIMED = "unclaimed"
STATE_CLAIMED = "claimed"
STATE_PROVISIONED = "provisioned"
STATE_ACTIVE = "active"
STATE_REVOKED = "revoked"
STATE_DELETED = "deleted"  # the target of delete: the item is gone, polls get 404

# Device API.
SIGNATURE_WINDOW_SECONDS = 300
LAST_SEEN_WRITE_INTERVAL_SECONDS = 300
MAX_BODY_BYTES = 16 * 1024
MAX_CSR_BYTES = 4096  # a P-256 CSR is ~500 bytes, an RSA-4096 one ~1.7 KB
HEADER_DEVICE_ID = "x-device-id"
HEADER_TIMESTAMP = "x-timestamp"
HEADER_SIGNATURE = "x-signature"

# The owner's page reaches /v1/* through CloudFront. CloudFront adds the viewer's address
# (`CloudFront-Viewer-Address`, "ip:port") when an origin request policy asks for it, and a secret
# origin header (its value is the `originVerify` key of the service secret) that proves the request
# came through CloudFront; only then is the viewer address believed. Locally the gateway plays CloudFront.
HEADER_VIEWER_ADDRESS = "cloudfront-viewer-address"
HEADER_ORIGIN_VERIFY = "x-latchkey-origin-verify"
SECRET_ORIGIN_VERIFY_KEY = "originVerify"

# MQTT topics; "{thing}" is the thing name, which is also the device id and the MQTT client id.
TOPIC_STATUS = "latchkey/things/{thing}/status"
TOPIC_COMMANDS = "latchkey/things/{thing}/commands"
TOPIC_SHADOW_PREFIX = "$aws/things/{thing}/shadow"
TOPIC_STATUS_FILTER = "latchkey/things/+/status"

REGISTRATION_TOKEN_TTL_SECONDS = 24 * 3600

# Certificate rotation (lambdas/logic/rotation.py).
DEFAULT_CERT_VALIDITY_DAYS = 365
DEFAULT_ROTATION_WINDOW_HOURS = 7 * 24
