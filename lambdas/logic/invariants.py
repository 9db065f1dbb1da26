"""The invariant checker: scans DynamoDB (devices, pending, audit) and IoT (things, certificates,
principals, policies) and reports every inconsistency between them.

Run after every concurrency and fault test (tests/security), and by operators as `latchkey doctor`. It
only reads. `check()` returns a list of `Problem`s (empty = consistent); `inventory()` is the snapshot
it works on, so a caller can check twice without scanning twice.

Rules (a device is an item of the devices table; things, certificates and policies are IoT's):

Devices
- `device-state`: the state is one of unclaimed, claimed, provisioned, active, revoked;
- `owner-missing` / `owner-on-unclaimed`: an owner exactly for claimed, provisioned, active and
  revoked devices;
- `certificate-too-early`: an unclaimed or claimed device names no certificate;
- `certificate-missing`: a provisioned or active device names a certificate, and it exists in IoT;
- `certificate-status`: IoT's status fits the state (provisioned: INACTIVE until the ack, active:
  ACTIVE, revoked: anything but ACTIVE), and the record's `certificateStatus` says what IoT says;
- `thing-name`: the thing is named after the device;
- `thing-missing` / `certificate-detached`: a provisioned or active device's thing exists and its
  certificate is attached to it;
- `policy-missing` / `policy-extra`: that certificate carries the device policy, and no other policy
  (another policy would give a device more than its own topics);
- `certificate-shared`: no two devices name one certificate;
- `registration-stale`: a device registered with a token is still the one its pending item names
  (regenerating the token retires the device that used the old one).
- `rotation-state` / `rotation-certificate` / `rotation-expired`: the one exception to "one usable
  certificate per device" is a rotation (lambdas/logic/rotation.py), tracked on the record: only an
  active device has one; its pending certificate exists, is attached to the thing with the device
  policy, is INACTIVE until the ack and ACTIVE after it; and it is younger than the rotation window
  (older: two usable certificates past the window). Any other certificate on the thing is an orphan.

IoT (things of the Latchkey thing type or with the device id prefix; certificates that are Latchkey's:
named by a device, attached to a Latchkey thing, carrying the device policy, or with a device id as
subject CN)
- `policy-absent`: the device policy exists;
- `thing-orphan`: every thing has a device record;
- `certificate-orphan`: every certificate is named by a device (an orphan attached to a thing is what an
  interrupted provisioning leaves and the next poll adopts; an unattached one what a crash right after
  issuing leaves - INACTIVE, it cannot connect; ACTIVE, it is a live credential nobody manages);
- `certificate-multi-thing`: a certificate is attached to at most one thing;
- `certificate-usable`: a certificate the broker would admit (ACTIVE, attached to a thing, carrying the
  device policy: `local.iot_sync` asks the same of IoT at every connect) is the one an `active` device
  names, on that device's thing. This is the security property the rules above imply one by one; said
  once, it also means never two usable certificates for one device.

Pending (registration tokens)
- `pending-state`: pending or registered;
- `pending-device`: a registered item names its device, a pending one names none;
- `pending-token-shared` / `pending-device-shared`: no two items share a token hash or a device.

Grants (shares and transfer offers, dal/grants.py)
- `grant-stale`: every share and offer belongs to its device's current ownership (release, transfer and
  delete remove them in their transaction; a leftover grants nothing, but is reported).

Audit trail
- `audit-malformed`: every event has deviceId, eventKey, at, action and actor;
- `audit-secret`: no event holds secret material (private key PEM, a token or claim code field);
- `audit-missing`: every device has its creation event (minted/registered); an owned device the
  `device.claimed` event of its owner; a certified device the `certificate.issued` event of its
  certificate; an active one `certificate.activated`; a revoked one `certificate.revoked`.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from lambdas import constants as c
from lambdas import definitions

STATES = (c.STATE_UNCLAIMED, c.STATE_CLAIMED, c.STATE_PROVISIONED, c.STATE_ACTIVE, c.STATE_REVOKED)
NEEDS_OWNER = (c.STATE_CLAIMED, c.STATE_PROVISIONED, c.STATE_ACTIVE, c.STATE_REVOKED)
NO_CERTIFICATE_YET = (c.STATE_UNCLAIMED, c.STATE_CLAIMED)
CERTIFIED = (c.STATE_PROVISIONED, c.STATE_ACTIVE)
EXPECTED_STATUS = {c.STATE_PROVISIONED: "INACTIVE", c.STATE_ACTIVE: "ACTIVE"}
PENDING_STATES = ("pending", "registered")  # lambdas.logic.registration.STATE_PENDING / STATE_REGISTERED
CREATION_EVENTS = ("device.minted", "device.registered")
AUDIT_FIELDS = (c.AUDIT_PK, c.AUDIT_SK, "at", "action", "actor")
SECRET_MARKERS = ("PRIVATE KEY-----",)
SECRET_FIELDS = ("registrationToken", "token", "claimCode", "code", "privateKeyPem")


@dataclass(frozen=True)
class Problem:
    kind: str  # a machine code, e.g. "thing-orphan"
    subject: str  # a device id, certificate id, thing name, pending id or audit event
    message: str

    def __str__(self) -> str:
        return f"{self.subject}: {self.message} [{self.kind}]"


@dataclass
class Certificate:
    certificate_id: str
    status: str
    arn: str
    things: list[str] = field(default_factory=list)  # every thing it is attached to
    policies: list[str] | None = None  # attached policies (looked up for the certificates that matter)


@dataclass
class Inventory:
    devices: list[dict[str, Any]]
    pending: list[dict[str, Any]]
    events: dict[str, list[dict[str, Any]]]  # device id -> audit events
    malformed_events: list[dict[str, Any]]
    certificates: dict[str, Certificate]  # Latchkey's certificates by id
    things: dict[str, list[str]]  # Latchkey thing -> attached certificate ids
    policy_exists: bool
    grants: list[dict[str, Any]] = field(default_factory=list)  # shares and transfer offers

    def summary(self) -> str:
        return (
            f"{len(self.devices)} devices, {len(self.pending)} pending devices, "
            f"{sum(len(e) for e in self.events.values())} audit events, {len(self.things)} things, "
            f"{len(self.certificates)} certificates"
        )


# --- reading -----------------------------------------------------------------------------------------


def _paginate(call: Any, key: str, **kwargs: Any) -> list[Any]:
    items: list[Any] = []
    while True:
        answer = call(**kwargs)
        items += answer.get(key, [])
        if answer.get("nextMarker"):
            kwargs["marker"] = answer["nextMarker"]
        elif answer.get("nextToken"):
            kwargs["nextToken"] = answer["nextToken"]
        else:
            return items


def _is_latchkey_thing(thing: dict[str, Any], thing_type: str) -> bool:
    return thing.get("thingTypeName") == thing_type or str(thing.get("thingName", "")).startswith(
        c.DEVICE_ID_PREFIX
    )


def _subject_cn(certificate_pem: str) -> str:
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(certificate_pem.encode())
        names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    except ValueError:
        return ""
    return str(names[0].value) if names else ""


def _certificate_ids(arns: list[str]) -> list[str]:
    """The certificate ids among principal/target ARNs (`arn:...:cert/<id>`)."""
    return [arn.rsplit("/", 1)[-1] for arn in arns if ":cert/" in arn]


def inventory(iot: Any = None) -> Inventory:
    """Everything the rules look at: three table scans and the IoT inventory."""
    from lambdas import config
    from lambdas.aws_clients import client
    from lambdas.dal import ddb

    iot = iot or client("iot")
    devices = ddb.scan(config.devices_table())
    pending = ddb.scan(config.pending_table())
    events: dict[str, list[dict[str, Any]]] = defaultdict(list)
    malformed: list[dict[str, Any]] = []
    for event in ddb.scan(config.audit_table()):
        if any(not event.get(name) for name in AUDIT_FIELDS):
            malformed.append(event)
        if event.get(c.AUDIT_PK):
            events[str(event[c.AUDIT_PK])].append(event)

    policy = os.environ.get(c.ENV_IOT_POLICY_NAME) or definitions.POLICY_NAME
    thing_type = os.environ.get(c.ENV_THING_TYPE_NAME) or definitions.THING_TYPE_NAME
    try:
        iot.get_policy(policyName=policy)
        policy_exists = True
        with_policy = set(
            _certificate_ids(_paginate(iot.list_targets_for_policy, "targets", policyName=policy))
        )
    except Exception as exc:
        if getattr(exc, "response", {}).get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
        policy_exists, with_policy = False, set()

    all_certificates = {
        cert["certificateId"]: Certificate(
            cert["certificateId"], cert["status"], cert.get("certificateArn", "")
        )
        for cert in _paginate(iot.list_certificates, "certificates")
    }
    things: dict[str, list[str]] = {}
    for thing in _paginate(iot.list_things, "things"):
        name = str(thing["thingName"])
        attached = _certificate_ids(_paginate(iot.list_thing_principals, "principals", thingName=name))
        for cid in attached:
            if cid in all_certificates:
                all_certificates[cid].things.append(name)
        if _is_latchkey_thing(thing, thing_type):
            things[name] = attached

    named = {str(d["certificateId"]) for d in devices if d.get("certificateId")}
    named |= {cid for d in devices if (cid := _pending_certificate(d))}
    certificates: dict[str, Certificate] = {}
    for cid, cert in all_certificates.items():
        ours = cid in named or cid in with_policy or any(t in things for t in cert.things)
        if not ours:  # unattached and unnamed: Latchkey's if it certifies a device id
            description = iot.describe_certificate(certificateId=cid)["certificateDescription"]
            ours = _subject_cn(str(description.get("certificatePem") or "")).startswith(c.DEVICE_ID_PREFIX)
        if ours:
            certificates[cid] = cert
    for cid in named & set(certificates):
        cert = certificates[cid]
        cert.policies = [
            p["policyName"] for p in _paginate(iot.list_attached_policies, "policies", target=cert.arn)
        ]
    for cid in with_policy & set(certificates):
        if certificates[cid].policies is None:
            certificates[cid].policies = [policy]
    grants = ddb.scan(config.grants_table()) if os.environ.get(c.ENV_GRANTS_TABLE) else []
    return Inventory(devices, pending, dict(events), malformed, certificates, things, policy_exists, grants)


# --- the rules ---------------------------------------------------------------------------------------


def _pending_certificate(device: dict[str, Any]) -> str:
    """The certificate id of the device's rotation in progress ("" for none)."""
    rotation = device.get("rotation")
    return str(rotation.get("certificateId") or "") if isinstance(rotation, dict) else ""


def _usable(device: dict[str, Any]) -> set[str]:
    """The certificates a device may hold: the recorded one and its rotation's pending one."""
    return {cid for cid in (str(device.get("certificateId") or ""), _pending_certificate(device)) if cid}


def check(snapshot: Inventory | None = None) -> list[Problem]:
    """Every inconsistency between the tables and IoT (empty: all consistent)."""
    inv = snapshot or inventory()
    policy = os.environ.get(c.ENV_IOT_POLICY_NAME) or definitions.POLICY_NAME
    problems: list[Problem] = []

    def report(kind: str, subject: Any, message: str) -> None:
        problems.append(Problem(kind, str(subject), message))

    if not inv.policy_exists:
        report("policy-absent", policy, "the device policy does not exist in IoT")

    pending_by_id = {str(p.get(c.PENDING_PK)): p for p in inv.pending}
    naming: dict[str, list[str]] = {}  # certificate id -> the devices that name it
    by_id: dict[str, dict[str, Any]] = {}
    for device in inv.devices:
        device_id = str(device.get(c.DEVICE_PK))
        by_id[device_id] = device
        state = device.get("state")
        owner = device.get(c.DEVICE_OWNER_KEY)
        cert_id = str(device.get("certificateId") or "")
        if state not in STATES:
            report("device-state", device_id, f"has unknown state {state!r}")
        if state in NEEDS_OWNER and not owner:
            report("owner-missing", device_id, f"is {state} but has no owner")
        if state == c.STATE_UNCLAIMED and owner:
            report("owner-on-unclaimed", device_id, f"is unclaimed but has owner {owner}")
        if device.get("thingName") and device["thingName"] != device_id:
            report("thing-name", device_id, f"names thing {device['thingName']}, not its own id")
        for usable in _usable(device):
            naming.setdefault(usable, []).append(device_id)
        if state in NO_CERTIFICATE_YET and cert_id:
            report("certificate-too-early", device_id, f"is {state} but names certificate {cert_id}")
        if state in CERTIFIED or (state == c.STATE_REVOKED and cert_id):
            _check_certificate(device, device_id, state, cert_id, inv, policy, report)
        _check_registration(device, device_id, pending_by_id, report)
        _check_rotation(device, device_id, state, inv, policy, report)
        _check_audit(device, device_id, state, owner, cert_id, inv.events.get(device_id, []), report)

    for cert_id, names in naming.items():
        if len(names) > 1:
            report("certificate-shared", cert_id, f"is named by several devices: {', '.join(sorted(names))}")
    for thing, attached in inv.things.items():
        record = by_id.get(thing)
        if record is None:
            report("thing-orphan", thing, "thing has no device record")
        for cert_id in attached:
            if record is None or cert_id not in _usable(record):
                status = inv.certificates[cert_id].status if cert_id in inv.certificates else "unknown"
                whose = "which has no device record" if record is None else "whose device does not name it"
                report(
                    "certificate-orphan",
                    cert_id,
                    f"is {status} and attached to thing {thing}, {whose} "
                    "(left by an interrupted provisioning or removal)",
                )
    for cert_id, cert in inv.certificates.items():
        if len(cert.things) > 1:
            report(
                "certificate-multi-thing", cert_id, f"is attached to several things: {sorted(cert.things)}"
            )
        if cert_id not in naming and not any(t in inv.things for t in cert.things):
            live = " - a live credential nobody manages" if cert.status == "ACTIVE" else ""
            report(
                "certificate-orphan",
                cert_id,
                f"is {cert.status}, attached to no Latchkey thing and named by no device{live}",
            )

    _check_usable(inv, by_id, policy, report)
    _check_pending(inv, by_id, report)
    for grant in inv.grants:
        granted = by_id.get(str(grant.get(c.GRANT_PK)))
        ownership = (granted or {}).get("ownership")
        if granted is None or granted.get("state") not in NEEDS_OWNER or grant.get("ownership") != ownership:
            report(
                "grant-stale",
                f"{grant.get(c.GRANT_PK)}/{grant.get(c.GRANT_SK)}",
                f"is a {grant.get('kind')} of ownership {grant.get('ownership')}, but the device "
                + ("is gone" if granted is None else f"is {granted.get('state')} in ownership {ownership}"),
            )
    for event in inv.malformed_events:
        report("audit-malformed", _event_name(event), f"lacks one of {', '.join(AUDIT_FIELDS)}")
    for device_events in inv.events.values():
        for event in device_events:
            leak = _secret_in(event)
            if leak:
                report("audit-secret", _event_name(event), f"holds secret material ({leak})")
    return problems


def _check_certificate(
    device: dict[str, Any],
    device_id: str,
    state: Any,
    cert_id: str,
    inv: Inventory,
    policy: str,
    report: Any,
) -> None:
    if not cert_id:
        report("certificate-missing", device_id, f"is {state} but names no certificate")
        return
    if state in CERTIFIED and not device.get("certificatePem"):
        report("certificate-missing", device_id, f"is {state} but has no certificate PEM to deliver")
    cert = inv.certificates.get(cert_id)
    if cert is None:
        if state in CERTIFIED:
            report(
                "certificate-missing", device_id, f"names certificate {cert_id}, which does not exist in IoT"
            )
        return
    if state in EXPECTED_STATUS and cert.status != EXPECTED_STATUS[state]:
        report("certificate-status", device_id, f"is {state} but certificate {cert_id} is {cert.status}")
    if state == c.STATE_REVOKED and cert.status == "ACTIVE":
        report("certificate-status", device_id, f"is revoked but certificate {cert_id} is ACTIVE")
    recorded = device.get("certificateStatus")
    if recorded and recorded != cert.status:
        report(
            "certificate-status", device_id, f"records certificate status {recorded}, IoT says {cert.status}"
        )
    if state not in CERTIFIED:
        return
    thing = str(device.get("thingName") or device_id)
    if thing not in inv.things:
        report("thing-missing", device_id, f"is {state} but thing {thing} does not exist")
    elif cert_id not in inv.things[thing]:
        report("certificate-detached", device_id, f"certificate {cert_id} is not attached to thing {thing}")
    policies = cert.policies or []
    if policy not in policies:
        report("policy-missing", device_id, f"certificate {cert_id} does not carry policy {policy}")
    extra = sorted(set(policies) - {policy})
    if extra:
        report("policy-extra", device_id, f"certificate {cert_id} also carries {', '.join(extra)}")


def _check_usable(inv: Inventory, by_id: dict[str, dict[str, Any]], policy: str, report: Any) -> None:
    for cert_id, cert in inv.certificates.items():
        if cert.status != "ACTIVE" or policy not in (cert.policies or []):
            continue  # refused at connect: not ACTIVE, or no policy allows iot:Connect
        for thing in cert.things:
            record = by_id.get(thing)
            if record is None:
                whose = "which has no device record"
            elif record.get("state") != c.STATE_ACTIVE:
                whose = f"whose device is {record.get('state')}"
            elif cert_id not in _usable(record):  # its own, or its rotation's pending one (the overlap)
                whose = f"whose device names certificate {record.get('certificateId')}"
            else:
                continue
            report("certificate-usable", cert_id, f"is usable at the broker as thing {thing}, {whose}")


def _check_rotation(
    device: dict[str, Any], device_id: str, state: Any, inv: Inventory, policy: str, report: Any
) -> None:
    rotation = device.get("rotation")
    if not rotation and not device.get("rotationId"):
        return
    if state != c.STATE_ACTIVE:
        report("rotation-state", device_id, f"is {state} but has a certificate rotation in progress")
        return
    if not isinstance(rotation, dict) or not device.get("rotationId"):
        report("rotation-state", device_id, "has half a rotation (rotation and rotationId go together)")
        return
    from lambdas.domain import times

    expiry = times.parse_iso(rotation.get("expiresAt"))
    if expiry is None or expiry.timestamp() <= times.now():
        report(
            "rotation-expired",
            device_id,
            f"rotation {device['rotationId']} is past its window (expires {rotation.get('expiresAt')}): "
            "abandon it (its certificate removed, the current one kept)",
        )
    pending = _pending_certificate(device)
    if not pending:
        return  # requested: no certificate issued yet
    cert = inv.certificates.get(pending)
    if cert is None:
        report("rotation-certificate", device_id, f"rotation names certificate {pending}, not in IoT")
        return
    wanted = "ACTIVE" if rotation.get("step") == "activated" else "INACTIVE"
    if cert.status != wanted:
        report(
            "rotation-certificate",
            device_id,
            f"rotation is {rotation.get('step')} but its certificate {pending} is {cert.status}",
        )
    thing = str(device.get("thingName") or device_id)
    if pending not in inv.things.get(thing, []):
        report(
            "rotation-certificate", device_id, f"rotation certificate {pending} is not attached to {thing}"
        )
    if policy not in (cert.policies or []):
        report("rotation-certificate", device_id, f"rotation certificate {pending} lacks policy {policy}")


def _check_registration(
    device: dict[str, Any], device_id: str, pending_by_id: dict[str, dict[str, Any]], report: Any
) -> None:
    registration = device.get("registration")
    pending_id = registration.get("pendingId") if isinstance(registration, dict) else None
    if not pending_id or str(pending_id) not in pending_by_id:
        return  # the pending item was deleted or expired: nothing left to disagree with
    item = pending_by_id[str(pending_id)]
    if item.get("deviceId") != device_id:
        report(
            "registration-stale",
            device_id,
            f"was registered with pending device {pending_id}, which now names "
            f"{item.get('deviceId') or 'no device'} (token regenerated but this device not retired)",
        )


def _check_audit(
    device: dict[str, Any],
    device_id: str,
    state: Any,
    owner: Any,
    cert_id: str,
    events: list[dict[str, Any]],
    report: Any,
) -> None:
    actions = {str(e.get("action")) for e in events}

    def about(action: str, certificate: str) -> bool:
        return any(
            e.get("action") == action and (e.get("detail") or {}).get("certificateId") == certificate
            for e in events
        )

    if not actions & set(CREATION_EVENTS):
        report("audit-missing", device_id, "has no creation event (device.minted or device.registered)")
    if state in NEEDS_OWNER and owner:
        claimed = any(
            e.get("action") == "device.claimed"
            and (e.get("actor") == owner or (e.get("detail") or {}).get("ownerId") == owner)
            for e in events
        )
        if not claimed:
            report("audit-missing", device_id, f"is owned by {owner} but has no device.claimed event for it")
    if cert_id and state in (*CERTIFIED, c.STATE_REVOKED) and not about("certificate.issued", cert_id):
        report("audit-missing", device_id, f"has no certificate.issued event for {cert_id}")
    if state == c.STATE_ACTIVE and cert_id and not about("certificate.activated", cert_id):
        report("audit-missing", device_id, f"is active but has no certificate.activated event for {cert_id}")
    if state == c.STATE_REVOKED and "certificate.revoked" not in actions:
        report("audit-missing", device_id, "is revoked but has no certificate.revoked event")


def _check_pending(inv: Inventory, by_id: dict[str, dict[str, Any]], report: Any) -> None:
    tokens: dict[str, list[str]] = defaultdict(list)  # token hash -> pending ids
    named: dict[str, list[str]] = defaultdict(list)  # device id -> pending ids
    for item in inv.pending:
        pending_id = str(item.get(c.PENDING_PK))
        state = item.get("state")
        device_id = item.get("deviceId")
        if state not in PENDING_STATES:
            report("pending-state", pending_id, f"has unknown state {state!r}")
        if state == "registered" and not device_id:
            report("pending-device", pending_id, "is registered but names no device")
        if state == "pending" and device_id:
            report("pending-device", pending_id, f"is waiting for its token but names device {device_id}")
        if item.get(c.PENDING_TOKEN_KEY):
            tokens[str(item[c.PENDING_TOKEN_KEY])].append(pending_id)
        if device_id:
            named[str(device_id)].append(pending_id)
            device = by_id.get(str(device_id))
            registration = (device or {}).get("registration")
            linked = registration.get("pendingId") if isinstance(registration, dict) else None
            if device is not None and linked and linked != pending_id:
                report("pending-device", pending_id, f"names device {device_id}, which belongs to {linked}")
    for ids in tokens.values():
        if len(ids) > 1:
            report("pending-token-shared", ", ".join(sorted(ids)), "pending devices share one token")
    for device_id, ids in named.items():
        if len(ids) > 1:
            report(
                "pending-device-shared", device_id, f"is named by pending devices {', '.join(sorted(ids))}"
            )


def _event_name(event: dict[str, Any]) -> str:
    return f"{event.get(c.AUDIT_PK, '?')}/{event.get(c.AUDIT_SK, '?')}"


def _secret_in(value: Any, path: str = "") -> str | None:
    """Where in an audit event secret material sits, or None."""
    if isinstance(value, dict):
        for key, inner in value.items():
            if key in SECRET_FIELDS and inner:
                return f"field {path}{key}"
            found = _secret_in(inner, f"{path}{key}.")
            if found:
                return found
    elif isinstance(value, list):
        for inner in value:
            found = _secret_in(inner, path)
            if found:
                return found
    elif isinstance(value, str) and any(marker in value for marker in SECRET_MARKERS):
        return f"PEM private key in {path.rstrip('.') or 'event'}"
    return None
