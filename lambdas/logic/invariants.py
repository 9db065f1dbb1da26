"""The invariant checker: scans DynamoDB and IoT and reports every inconsistency between them.

Used after every concurrency and fault test, and by operators as `latchkey doctor`. It reads only.
Rules (a device is an item of the devices table; a certificate and a thing are IoT's):
- an owner exists exactly for the states that need one (claimed, provisioned, active);
- a provisioned/active device names a certificate that exists, with the right status (INACTIVE until
  the ack, ACTIVE after), attached to the device's thing, and the thing exists;
- a revoked device's certificate is not ACTIVE;
- no certificate is named by two devices;
- every certificate attached to a thing belongs to that thing's device record (no orphans), and no
  ACTIVE certificate exists that no device names;
- every thing has a device record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lambdas import constants as c

NEEDS_OWNER = (c.STATE_CLAIMED, c.STATE_PROVISIONED, c.STATE_ACTIVE)
HAS_CERTIFICATE = (c.STATE_PROVISIONED, c.STATE_ACTIVE)
EXPECTED_STATUS = {c.STATE_PROVISIONED: "INACTIVE", c.STATE_ACTIVE: "ACTIVE"}


@dataclass(frozen=True)
class Problem:
    subject: str  # a device id, certificate id or thing name
    message: str

    def __str__(self) -> str:
        return f"{self.subject}: {self.message}"


def _paginate(call: Any, key: str, **kwargs: Any) -> list[Any]:
    items: list[Any] = []
    while True:
        answer = call(**kwargs)
        items += answer.get(key, [])
        token = answer.get("nextMarker") or answer.get("nextToken")
        if not token:
            return items
        kwargs["marker" if "nextMarker" in answer else "nextToken"] = token


def _iot_inventory(iot: Any) -> tuple[dict[str, str], dict[str, list[str]]]:
    """({certificate id: status}, {thing name: [attached certificate ids]})."""
    certificates = {
        cert["certificateId"]: cert["status"] for cert in _paginate(iot.list_certificates, "certificates")
    }
    things: dict[str, list[str]] = {}
    for thing in _paginate(iot.list_things, "things"):
        name = thing["thingName"]
        principals = _paginate(iot.list_thing_principals, "principals", thingName=name)
        things[name] = [arn.rsplit("/", 1)[-1] for arn in principals if ":cert/" in arn]
    return certificates, things


def check(devices: list[dict[str, Any]] | None = None, iot: Any = None) -> list[Problem]:
    from lambdas.aws_clients import client
    from lambdas.dal import devices as device_table

    items = device_table.list_all() if devices is None else devices
    certificates, things = _iot_inventory(iot or client("iot"))
    problems: list[Problem] = []
    named: dict[str, str] = {}
    for item in items:
        device_id = str(item.get(c.DEVICE_PK))
        state = item.get("state")
        owner = item.get(c.DEVICE_OWNER_KEY)
        cert_id = item.get("certificateId")
        if state in NEEDS_OWNER and not owner:
            problems.append(Problem(device_id, f"is {state} but has no owner"))
        if state == c.STATE_UNCLAIMED and owner:
            problems.append(Problem(device_id, "is unclaimed but has an owner"))
        if cert_id:
            if cert_id in named:
                problems.append(Problem(device_id, f"shares certificate {cert_id} with {named[cert_id]}"))
            named[cert_id] = device_id
        if state in HAS_CERTIFICATE:
            if not cert_id:
                problems.append(Problem(device_id, f"is {state} but names no certificate"))
                continue
            status = certificates.get(cert_id)
            if status is None:
                problems.append(Problem(device_id, f"names certificate {cert_id}, which does not exist"))
                continue
            if status != EXPECTED_STATUS[state]:
                problems.append(Problem(device_id, f"is {state} but its certificate is {status}"))
            thing = item.get("thingName") or device_id
            if thing not in things:
                problems.append(Problem(device_id, f"is {state} but thing {thing} does not exist"))
            elif cert_id not in things[thing]:
                problems.append(Problem(device_id, f"certificate {cert_id} is not attached to thing {thing}"))
        if state == c.STATE_REVOKED and cert_id and certificates.get(cert_id) == "ACTIVE":
            problems.append(Problem(device_id, f"is revoked but certificate {cert_id} is ACTIVE"))
    by_id = {str(item.get(c.DEVICE_PK)): item for item in items}
    for thing, attached in things.items():
        device = by_id.get(thing)
        if device is None:
            problems.append(Problem(thing, "thing has no device record"))
            continue
        for cert_id in attached:
            if cert_id != device.get("certificateId"):
                problems.append(
                    Problem(cert_id, f"is attached to thing {thing} but the device does not name it")
                )
    for cert_id, status in certificates.items():
        if status == "ACTIVE" and cert_id not in named:
            problems.append(Problem(cert_id, "is ACTIVE but no device names it"))
    return problems
