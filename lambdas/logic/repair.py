"""Repair what an interrupted change left half-done in IoT (`latchkey doctor --repair`).

`lambdas.logic.invariants.check()` finds the problems; `plan()` decides, for each, a fix that cannot make
anything worse, and `repair()` applies them with the idempotent adapter steps (`lambdas.adapters.iot`),
so running it twice, or concurrently with the service, converges. What a fix cannot decide without
the owner (was a half-done change a delete or a release?) is reported, never guessed.

Fixes, by problem kind:

- `thing-orphan` (a thing with no device record): its certificates are revoked, disconnected, detached
  and deleted, then the thing;
- `certificate-orphan` (a certificate no device names): revoked, disconnected, detached and deleted. An
  INACTIVE one attached to the thing of a `claimed` device is left alone: it is what an interrupted
  provisioning leaves, and the device's next poll adopts it (an ACTIVE one is never adopted: removed);
- `certificate-usable` (the broker would admit a certificate for a device that is not `active` with it):
  revoked and the connection dropped, unless it is the certificate of a `provisioned` device, whose
  ack makes the record agree (left for it);
- `certificate-status` on a `revoked` device whose certificate is still ACTIVE: revoked (and the
  connection dropped), which is what the owner asked for;
- `certificate-detached` / `policy-missing` on a `provisioned` or `active` device: the policy and the
  thing attached again (what provisioning does);
- `thing-missing` on a `provisioned` or `active` device: the thing created and the certificate attached.

Everything else (table-side problems, a certified device whose certificate is gone or no longer usable,
extra policies, a certificate on several things) is left for a person: `Outcome.done` is False with the
reason. IoT still finishing a detach is an outcome with an error ("retry"), not an exception.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lambdas import constants as c
from lambdas.logic.invariants import CERTIFIED, Inventory, Problem, check, inventory

log = logging.getLogger("latchkey.repair")


@dataclass(frozen=True)
class Fix:
    """One repair: what it does, and the call that does it (None: nothing safe to do)."""

    problem: Problem
    description: str
    apply: Callable[[], None] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Outcome:
    problem: Problem
    description: str
    done: bool
    error: str | None = None


def _iot() -> Any:
    from lambdas.adapters import iot  # deferred: planning needs no AWS client

    return iot


def _remove_certificate(thing: str | None, certificate_id: str) -> Callable[[], None]:
    return lambda: _iot().remove_certificate_and_thing(thing or "", certificate_id, delete_thing=False)


def plan(inv: Inventory, problems: list[Problem]) -> list[Fix]:
    """A fix for each problem (pure: reads only `inv`)."""
    by_id = {str(d.get(c.DEVICE_PK)): d for d in inv.devices}
    fixes: list[Fix] = []
    for problem in problems:
        fixes.append(_fix(problem, inv, by_id))
    return fixes


def _fix(problem: Problem, inv: Inventory, by_id: dict[str, dict[str, Any]]) -> Fix:
    kind, subject = problem.kind, problem.subject
    if kind == "thing-orphan":
        return Fix(
            problem,
            f"remove thing {subject} and its certificates",
            lambda: _iot().remove_certificate_and_thing(subject, None, delete_thing=True),
        )
    if kind == "certificate-orphan":
        cert = inv.certificates.get(subject)
        things = cert.things if cert else []
        claimed = [t for t in things if (by_id.get(t) or {}).get("state") == c.STATE_CLAIMED]
        if claimed and cert is not None and cert.status == "INACTIVE":
            return Fix(problem, f"left for the next poll of {claimed[0]}, which adopts it")
        return Fix(
            problem,
            f"revoke, disconnect, detach and delete certificate {subject}",
            _remove_certificate(things[0] if things else None, subject),
        )
    if kind == "certificate-usable":
        return _fix_usable(problem, inv, by_id)
    device = by_id.get(subject)
    if device is None:
        return Fix(problem, "not repaired automatically")
    state = device.get("state")
    cert_id = str(device.get("certificateId") or "")
    thing = str(device.get("thingName") or subject)
    cert = inv.certificates.get(cert_id)
    if kind == "certificate-status" and state == c.STATE_REVOKED and cert and cert.status == "ACTIVE":
        return Fix(
            problem,
            f"revoke certificate {cert_id} and drop its connection",
            lambda: _iot().revoke_certificate(cert_id, thing),
        )
    usable = cert is not None and cert.status == ("ACTIVE" if state == c.STATE_ACTIVE else "INACTIVE")
    if kind in ("certificate-detached", "policy-missing") and state in CERTIFIED and usable:
        return Fix(
            problem,
            f"attach the policy and thing {thing} to certificate {cert_id}",
            lambda: _iot().attach(thing, cert_id),
        )
    if kind == "thing-missing" and state in CERTIFIED and usable:

        def recreate() -> None:
            _iot().ensure_thing(thing, {"latchkey": "device"})
            _iot().attach(thing, cert_id)

        return Fix(problem, f"create thing {thing} and attach certificate {cert_id}", recreate)
    return Fix(problem, "not repaired automatically")


def _fix_usable(problem: Problem, inv: Inventory, by_id: dict[str, dict[str, Any]]) -> Fix:
    cert_id = problem.subject
    cert = inv.certificates.get(cert_id)
    things = cert.things if cert else []
    for thing in things:
        device = by_id.get(thing) or {}
        if device.get("state") == c.STATE_PROVISIONED and device.get("certificateId") == cert_id:
            return Fix(problem, f"left for the ack of {thing}, which records it active")
    first = things[0] if things else None
    return Fix(
        problem,
        f"revoke certificate {cert_id} and drop its connection",
        lambda: _iot().revoke_certificate(cert_id, first),
    )


def repair(
    problems: list[Problem] | None = None, *, dry_run: bool = False, snapshot: Inventory | None = None
) -> list[Outcome]:
    """Plan and (unless `dry_run`) apply a fix for every problem; one outcome per problem."""
    inv = snapshot or inventory()
    found = check(inv) if problems is None else problems
    outcomes: list[Outcome] = []
    done_calls: set[str] = set()  # one problem can be reported twice (e.g. under its device and cert)
    for fix in plan(inv, found):
        if fix.apply is None or dry_run:
            outcomes.append(Outcome(fix.problem, fix.description, False))
            continue
        if fix.description in done_calls:
            outcomes.append(Outcome(fix.problem, fix.description, True))
            continue
        try:
            fix.apply()
        except Exception as exc:  # IoT busy or still propagating: report, the next run finishes it
            log.warning("repair of %s failed: %s", fix.problem, exc)
            outcomes.append(Outcome(fix.problem, fix.description, False, str(exc) or type(exc).__name__))
            continue
        done_calls.add(fix.description)
        outcomes.append(Outcome(fix.problem, fix.description, True))
    return outcomes
