"""Model-based concurrency test: random interleavings of what devices and owners do, with the invariant
checker after every step (issue 12, item 4).

**The world.** Two owners and five devices: three with a label (claim code) and two onboarded with a
registration token (a pending device "added" by one of the owners; the device registers with its token,
and the owner can regenerate the token). The cloud is in-process moto (the `aws` fixture) made as strict
as the embedded cloud's IoT (`local.strict_iot`: CSRs honoured, AWS-issued certificates, DetachThingPrincipal
eventually consistent with a `DETACH_DELAY` of 50 ms, DeleteThing/DeleteCertificate failing while still
attached). Every call goes through the real handlers: the device API with signed events, the owner API
with the authorizer's claims.

**A schedule** (one interleaving) is `steps` steps drawn from a seeded RNG, after a prelude that brings
two "hot" devices (which then get most of the actions) to owned, provisioned or active. A step is one
action, or two actions started together on threads (`run_together`, a barrier, the second up to 30 ms
late), mostly on the same device (`SAME_DEVICE`), which is how races happen: two Lambda invocations at
once. Each owner API call runs in its own copy of the owner API
module (its own Powertools resolver, which keeps the current event in a module global), as two Lambda
containers would.

**After every step** (`_violations`):
- no answer is a 5xx, and no handler raised;
- `lambdas.logic.invariants.check()` finds nothing (tables against IoT, no orphan thing or certificate,
  ... and `certificate-usable`);
- the broker's own decision (`local.iot_sync.IotDirectory.authorize`, what the local front door asks at
  every CONNECT) admits a certificate only for an `active` device that names it, so never two usable
  certificates for one device;
- a step that ran alone meets the model's expectation (`Job.expect`): e.g. a revoke answered 200 leaves
  the device `revoked`.
A violation fails the test with the seed and the whole schedule so far; rerun one with
`pytest tests/security/test_interleavings.py -k "seeds-0"` (the schedule of a seed is reproducible;
the thread timing within a step is not, which is the point).

Sharing (`share`), transfer (`offer`, `accept`, the hard cut) and certificate rotation (`rotate`, the
owner's request, and `rotate-step`, the agent's request/ack/complete) are actions too; the two owners are
Cognito accounts, so that one can name the other by email.

**Adding an action** (e.g. rotate) is one function plus one entry: write
`def _share(world: World, slot: Slot) -> Job | None` returning the `Job` (label, the call, an optional
`after(status, body)` that updates the model, an optional `expect(status, body)` for when it ran alone),
or None when it does not apply to that slot; then add `"share": (_share, weight)` to `ACTIONS`. If the
new transition has a rule in `lambdas.logic.invariants`, it is checked after every step with no more
work.

`make test` runs `SCHEDULES` schedules of `STEPS` steps; `make fuzz` `FUZZ_SCHEDULES` of `FUZZ_STEPS`.
"""

from __future__ import annotations

import importlib.util
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from lambdas import constants as c
from lambdas.handlers import owner_api
from lambdas.logic import invariants
from tests import rawdb
from tests.security.flows import Device, Lab, answer
from tests.security.test_races import run_together
from tests.unit.lambdas import conftest as unit
from tests.unit.lambdas.conftest import owner_event

DETACH_DELAY = 0.05  # seconds: DetachThingPrincipal's propagation time in local.strict_iot
SCHEDULES, STEPS = 100, 5  # make test
FUZZ_SCHEDULES, FUZZ_STEPS = 1000, 10  # make fuzz
CHUNK = 10  # schedules per test item: xdist spreads them, and each stays well inside the timeout
PAIR = 0.6  # probability that a step starts two actions together
SAME_DEVICE = 0.7  # probability that the two act on the same device
# The two owners are Cognito accounts (moto's user pool): sharing and transfer name the other one by
# email, and the API knows owners by their `sub`. Filled by the `strict` fixture.
OWNERS: list[str] = []
EMAILS: dict[str, str] = {}  # sub -> email
LABEL_DEVICES, TOKEN_DEVICES = 3, 2


# --- the strict IoT, in process ----------------------------------------------------------------------


@pytest.fixture
def strict(aws: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The `aws` fixture with local.strict_iot installed in this process (undone afterwards), in the
    local default certificate mode ("aws": CreateCertificateFromCsr signed by a stand-in CA)."""
    import moto.settings
    from moto.core.botocore_stubber import BotocoreStubber
    from moto.iot.models import IoTBackend

    from local import strict_iot

    for name in (
        "create_certificate_from_csr",
        "register_certificate",
        "update_certificate",
        "attach_thing_principal",
        "detach_thing_principal",
        "delete_certificate",
    ):
        monkeypatch.setattr(IoTBackend, name, getattr(IoTBackend, name))  # restored at teardown
    monkeypatch.setitem(
        moto.settings.default_user_config, "iot", dict(moto.settings.default_user_config.get("iot", {}))
    )
    unit.test_ca()
    assert unit._CA_DIR is not None
    monkeypatch.setenv(strict_iot.ENV_AWS_CA_DIR, unit._CA_DIR.name)
    monkeypatch.setattr(strict_iot.STATE, "ca", None)
    monkeypatch.setattr(strict_iot.STATE, "detach_delay", DETACH_DELAY)
    strict_iot.install()
    strict_iot.forget_pending()
    serialized = BotocoreStubber.process_request

    def process_request(self: Any, request: Any) -> Any:
        strict_iot.apply_due_detaches()  # as the moto child does before each request
        return serialized(self, request)

    monkeypatch.setattr(BotocoreStubber, "process_request", process_request)
    monkeypatch.setenv(c.ENV_CERT_MODE, "aws")
    unit.reset_caches()
    _accounts(monkeypatch)
    yield aws
    strict_iot.forget_pending()


def _accounts(monkeypatch: pytest.MonkeyPatch) -> None:
    from lambdas.aws_clients import client

    idp = client("cognito-idp")
    pool = idp.create_user_pool(PoolName="latchkey-interleavings", UsernameAttributes=["email"])
    monkeypatch.setenv(c.ENV_USER_POOL_ID, pool["UserPool"]["Id"])
    OWNERS.clear()
    EMAILS.clear()
    for name in ("ann", "bob"):
        email = f"{name}@example.com"
        user = idp.admin_create_user(
            UserPoolId=pool["UserPool"]["Id"],
            Username=email,
            UserAttributes=[{"Name": "email", "Value": email}, {"Name": "email_verified", "Value": "true"}],
            MessageAction="SUPPRESS",
        )["User"]
        sub = next(a["Value"] for a in user["Attributes"] if a["Name"] == "sub")
        OWNERS.append(sub)
        EMAILS[sub] = email


def _broker(aws: Any) -> Any:
    """The local broker's connect-time decision, asking this moto."""
    from local.iot_sync import IotDirectory
    from local.pki import LocalCA

    assert unit._CA_DIR is not None
    service = LocalCA(unit._CA_DIR.name, create=False).issue_client_cert("latchkey-service")
    return IotDirectory(aws.iot, broker=None, service=service, revalidate_every=None)


# --- owner API "containers" --------------------------------------------------------------------------


class OwnerApis:
    """Copies of the owner API module, each used by one call at a time (one Lambda container each)."""

    def __init__(self, copies: int = 2) -> None:
        self.modules = [owner_api]
        for i in range(1, copies):
            spec = importlib.util.spec_from_file_location(
                f"lambdas.handlers.owner_api_container_{i}", owner_api.__file__
            )
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            self.modules.append(module)
        self.locks = [threading.Lock() for _ in self.modules]

    def call(self, method: str, path: str, owner: str, body: Any = None, ip: str = "") -> tuple[int, Any]:
        event = owner_event(method, path, owner, body, source_ip=ip or _ip())
        while True:
            for module, lock in zip(self.modules, self.locks, strict=True):
                if lock.acquire(blocking=False):
                    try:
                        return answer(module.handler(event, None))
                    finally:
                        lock.release()
            time.sleep(0.001)


_APIS: OwnerApis | None = None


def owner_apis() -> OwnerApis:
    global _APIS
    if _APIS is None:
        _APIS = OwnerApis()
    return _APIS


def _ip() -> str:
    """A fresh documentation address per call, so that no rate limit per source address is reached."""
    r = random.SystemRandom()
    return f"{r.choice(('192.0.2', '198.51.100', '203.0.113'))}.{r.randint(1, 254)}"


# --- the model ---------------------------------------------------------------------------------------


@dataclass
class Slot:
    """One device of the world, as the model knows it."""

    name: str
    kind: str  # "label" or "token"
    device: Device | None = None  # label: from minting; token: once registered
    creator: str | None = None  # token: the owner who added the pending device
    pending_id: str | None = None
    token: str | None = None
    old_tokens: list[str] = field(default_factory=list)
    key: Any = None  # token: the device's key (kept across registrations)
    mac: str = ""
    delivered: list[str] = field(default_factory=list)  # certificate ids delivered by polls
    offers: list[tuple[str, str]] = field(default_factory=list)  # (transfer id, recipient) offered
    new_key: Any = None  # a certificate rotation's new key, until `complete` makes it the device's
    rotated: list[str] = field(default_factory=list)  # certificate ids a rotation request delivered

    def record(self) -> dict[str, Any] | None:
        return None if self.device is None else rawdb.get(self.device.device_id, consistent=True)


@dataclass
class Job:
    label: str
    call: Callable[[], tuple[int, Any]]
    after: Callable[[int, Any], None] = lambda status, body: None
    expect: Callable[[int, Any], str | None] | None = None  # a broken expectation, when it ran alone


@dataclass
class World:
    lab: Lab
    rng: random.Random
    slots: list[Slot]
    heat: list[int] = field(default_factory=list)  # how often each slot is picked
    statuses: Counter[str] = field(default_factory=Counter)
    log: list[str] = field(default_factory=list)

    def pointless(self, condition: bool) -> bool:
        """Skip (mostly) an action the stored state makes uninteresting; now and then try it anyway."""
        return condition and self.rng.random() < 0.85

    def owner_of(self, slot: Slot) -> str:
        """Mostly the owner on record (or the token's creator), sometimes the other owner."""
        record = slot.record() or {}
        likely = record.get(c.DEVICE_OWNER_KEY) or slot.creator or self.rng.choice(OWNERS)
        return str(likely) if self.rng.random() < 0.85 else self.rng.choice(OWNERS)


def _state_is(slot: Slot, *states: str | None) -> Callable[[int, Any], str | None]:
    def check(status: int, body: Any) -> str | None:
        record = slot.record()
        state = None if record is None else record.get("state")
        return (
            None if state in states else f"{slot.name} is {state}, expected {' or '.join(map(str, states))}"
        )

    return check


def _poll(world: World, slot: Slot) -> Job | None:
    device = slot.device
    if device is None:
        return None

    def after(status: int, body: Any) -> None:
        if status == 200 and isinstance(body, dict) and body.get("status") == "provisioned":
            slot.delivered.append(str(body["certificateId"]))

    return Job(f"poll {slot.name}", lambda: world.lab.poll(device, ip=_ip()), after)


def _ack(world: World, slot: Slot) -> Job | None:
    device = slot.device
    if device is None or not slot.delivered:
        return None
    certificate_id = world.rng.choice(slot.delivered[-2:])  # now and then a superseded one
    return Job(
        f"ack {slot.name} {certificate_id[:8]}", lambda: world.lab.ack(device, certificate_id, ip=_ip())
    )


def _claim(world: World, slot: Slot) -> Job | None:
    if world.pointless((slot.record() or {}).get("state") != c.STATE_UNCLAIMED):
        return None
    who = world.rng.choice(OWNERS) if slot.kind == "label" else world.owner_of(slot)
    if slot.kind == "label":
        assert slot.device is not None
        code = slot.device.display_code
        return Job(
            f"claim {slot.name} by {who}",
            lambda: owner_apis().call("POST", "/v1/claims", who, {"claimCode": code}),
            expect=lambda s, b: None if s != 200 else _owned_by(slot, who),
        )
    if slot.pending_id is None:
        return None
    path = f"/v1/pending/{slot.pending_id}/claim"
    return Job(f"claim {slot.name} (pending) by {who}", lambda: owner_apis().call("POST", path, who))


def _owned_by(slot: Slot, who: str) -> str | None:
    record = slot.record() or {}
    return None if record.get(c.DEVICE_OWNER_KEY) == who else f"{slot.name} is not owned by {who}: {record}"


def _owner_action(method: str, suffix: str, verb: str, ok: int, *states: str | None) -> Any:
    def make(world: World, slot: Slot) -> Job | None:
        if slot.device is None or world.pointless(
            (slot.record() or {}).get("state") in (None, c.STATE_UNCLAIMED)
        ):
            return None
        who = world.owner_of(slot)
        path = f"/v1/devices/{slot.device.device_id}{suffix}"
        return Job(
            f"{verb} {slot.name} by {who}",
            lambda: owner_apis().call(method, path, who),
            expect=lambda s, b: None if s != ok else _state_is(slot, *states)(s, b),
        )

    return make


def _regenerate(world: World, slot: Slot) -> Job | None:
    if slot.kind != "token" or slot.pending_id is None:
        return None
    who = world.owner_of(slot)
    path = f"/v1/pending/{slot.pending_id}/token"

    def after(status: int, body: Any) -> None:
        if status == 200:
            if slot.token:
                slot.old_tokens.append(slot.token)
            slot.token = str(body["registrationToken"])

    return Job(f"regenerate {slot.name} by {who}", lambda: owner_apis().call("POST", path, who), after)


def _register(world: World, slot: Slot) -> Job | None:
    if slot.kind != "token" or slot.token is None or world.pointless(slot.record() is not None):
        return None
    token = (
        slot.token if not slot.old_tokens or world.rng.random() < 0.85 else world.rng.choice(slot.old_tokens)
    )

    def after(status: int, body: Any) -> None:
        if status == 201:
            device_id = str(body["deviceId"])
            if slot.device is None or slot.device.device_id != device_id:
                pem = slot.key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
                slot.device = Device(device_id, slot.key, "", "", pem)
                slot.delivered = []

    return Job(
        f"register {slot.name}{' (old token)' if token != slot.token else ''}",
        lambda: world.lab.register(token, slot.key, mac=slot.mac, ip=_ip()),
        after,
    )


def _other(who: str) -> str:
    return next(o for o in OWNERS if o != who)


def _share(world: World, slot: Slot) -> Job | None:
    """The owner (mostly) shares the device with the other account as an operator."""
    if slot.device is None or world.pointless(
        (slot.record() or {}).get("state") in (None, c.STATE_UNCLAIMED)
    ):
        return None
    who = world.owner_of(slot)
    path = f"/v1/devices/{slot.device.device_id}/shares"
    body = {"email": EMAILS[_other(who)], "role": world.rng.choice(("viewer", "operator"))}
    return Job(f"share {slot.name} by {who[:6]}", lambda: owner_apis().call("POST", path, who, body))


def _offer(world: World, slot: Slot) -> Job | None:
    """The owner (mostly) offers the device to the other account."""
    if slot.device is None or world.pointless(
        (slot.record() or {}).get("state") in (None, c.STATE_UNCLAIMED)
    ):
        return None
    who = world.owner_of(slot)
    recipient = _other(who)
    path = f"/v1/devices/{slot.device.device_id}/transfer"

    def after(status: int, body: Any) -> None:
        if status == 201:
            slot.offers.append((str(body["id"]), recipient))

    return Job(
        f"offer {slot.name} by {who[:6]}",
        lambda: owner_apis().call("POST", path, who, {"email": EMAILS[recipient]}),
        after,
    )


def _accept(world: World, slot: Slot) -> Job | None:
    """The recipient accepts the latest offer (now and then an older one): the hard cut."""
    if not slot.offers:
        return None
    transfer_id, recipient = world.rng.choice(slot.offers[-2:])
    path = f"/v1/transfers/{transfer_id}/accept"

    def after(status: int, body: Any) -> None:
        if status == 200:
            slot.delivered = []  # the old certificate is revoked; the device provisions anew

    return Job(
        f"accept {slot.name} by {recipient[:6]}",
        lambda: owner_apis().call("POST", path, recipient),
        after,
        expect=lambda s, b: (
            None if s != 200 else (_owned_by(slot, recipient) or _state_is(slot, c.STATE_CLAIMED)(s, b))
        ),
    )


def _rotate_request(world: World, slot: Slot) -> Job | None:
    """The owner (mostly) asks for a certificate rotation (a retained notice to the agent)."""
    if slot.device is None or world.pointless((slot.record() or {}).get("state") != c.STATE_ACTIVE):
        return None
    who = world.owner_of(slot)
    path = f"/v1/devices/{slot.device.device_id}/rotate"
    return Job(f"rotate {slot.name} by {who[:6]}", lambda: owner_apis().call("POST", path, who))


def _rotate_step(world: World, slot: Slot) -> Job | None:
    """The agent's side of a rotation: request (a CSR of a new key), ack, or complete (signed with the
    new key, after it connected); the step drawn among those that could apply."""
    device = slot.device
    if device is None or world.pointless((slot.record() or {}).get("state") != c.STATE_ACTIVE):
        return None
    steps = ["request"] + (["ack", "complete"] if slot.rotated else [])
    step = world.rng.choice(steps)
    if step == "request":
        slot.new_key = slot.new_key or ec.generate_private_key(ec.SECP256R1())
        body: dict[str, Any] = {"step": step, "csr": unit.make_csr(slot.new_key, device.device_id)}
        key = device.key
    else:
        body = {"step": step, "certificateId": world.rng.choice(slot.rotated[-2:])}
        key = slot.new_key if step == "complete" else device.key

    def call() -> tuple[int, Any]:
        return world.lab.device_call("/v1/device/rotate", body, key, device.device_id, ip=_ip())

    def after(status: int, answer_: Any) -> None:
        if step == "request" and status == 200 and isinstance(answer_, dict):
            slot.rotated.append(str(answer_["certificateId"]))
        if step == "complete" and status == 204:
            pem = slot.new_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
            slot.device = Device(device.device_id, slot.new_key, device.claim_code, device.display_code, pem)
            slot.new_key, slot.rotated = None, []

    return Job(f"rotate-{step} {slot.name}", call, after)


# name -> (the action, its weight: devices poll far more often than owners act)
ACTIONS: dict[str, tuple[Callable[[World, Slot], Job | None], int]] = {
    "poll": (_poll, 4),
    "ack": (_ack, 3),
    "claim": (_claim, 3),
    "revoke": (_owner_action("POST", "/revoke", "revoke", 200, c.STATE_REVOKED), 1),
    "release": (_owner_action("POST", "/release", "release", 200, c.STATE_UNCLAIMED), 1),
    "delete": (_owner_action("DELETE", "", "delete", 204, None), 1),
    "regenerate": (_regenerate, 1),
    "register": (_register, 2),
    "share": (_share, 1),
    "offer": (_offer, 1),
    "accept": (_accept, 1),
    "rotate": (_rotate_request, 1),
    "rotate-step": (_rotate_step, 2),
}


# --- the world, built and checked --------------------------------------------------------------------


def _clear(aws: Any) -> None:
    """An empty world in the same moto: every table item, thing and certificate gone (policy, thing
    type and CA stay). Much cheaper than a new mock per schedule."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends
    from moto.iot.models import iot_backends

    from local import strict_iot

    tables = dynamodb_backends[DEFAULT_ACCOUNT_ID][unit.REGION].tables
    for name in aws.tables.values():
        tables[name].items.clear()
    strict_iot.forget_pending()
    backend = iot_backends[DEFAULT_ACCOUNT_ID][unit.REGION]
    for store in (backend.things, backend.certificates, backend.principal_things, backend.principal_policies):
        store.clear()
    aws.dropped_connections.clear()


def _world(lab: Lab, rng: random.Random) -> World:
    slots = [Slot(f"label-{i}", "label", device=lab.mint()) for i in range(LABEL_DEVICES)]
    for i in range(TOKEN_DEVICES):
        creator = OWNERS[i % len(OWNERS)]
        status, body = owner_apis().call(
            "POST", "/v1/pending", creator, {"name": f"Token {i}", "board": "esp32"}
        )
        assert status == 201, body
        slots.append(
            Slot(
                f"token-{i}",
                "token",
                creator=creator,
                pending_id=str(body["id"]),
                token=str(body["registrationToken"]),
                key=ec.generate_private_key(ec.SECP256R1()),
                mac=f"02:00:00:00:00:{i:02x}",
            )
        )
    hot = rng.sample(range(len(slots)), 2)  # two devices get most of the attention: deeper histories
    return World(lab, rng, slots, heat=[4 if i in hot else 1 for i in range(len(slots))])


PRELUDES = {  # how far the hot devices get before the schedule starts, one after the other
    "fresh": (),
    "owned": ("own",),
    "provisioned": ("own", "poll"),
    "active": ("own", "poll", "ack"),
}


def _prelude(world: World) -> None:
    """Bring the two hot devices to a state drawn by the seed, sequentially: the schedule's few steps
    then start among owned, provisioned and active devices instead of spending themselves on claims."""
    for i, slot in enumerate(world.slots):
        if world.heat[i] == 1:
            continue
        plan = PRELUDES[world.rng.choice(list(PRELUDES))]
        for name in plan:
            make = {"own": _claim if slot.kind == "label" else _register, "poll": _poll, "ack": _ack}[name]
            job = make(world, slot)
            if job is None:
                break
            status, body = job.call()
            assert status < 300, (job.label, status, body)
            job.after(status, body)
            world.log.append(f"prelude: {job.label} -> {status}")


def _draw(world: World, slot: Slot | None = None) -> tuple[Job, Slot]:
    """An action that applies, on `slot` if one does within a few tries, else on any device."""
    names = list(ACTIONS)
    weights = [ACTIONS[n][1] for n in names]
    for attempt in range(1000):
        target = slot if slot is not None and attempt < 20 else world.rng.choices(world.slots, world.heat)[0]
        job = ACTIONS[world.rng.choices(names, weights)[0]][0](world, target)
        if job is not None:
            return job, target
    raise AssertionError("no action applies to any device")


def _step(world: World) -> list[Job]:
    """One action, or two started together, mostly on the same device (where races are)."""
    first, slot = _draw(world)
    if world.rng.random() >= PAIR:
        return [first]
    second, _ = _draw(world, slot if world.rng.random() < SAME_DEVICE else None)
    return [first, second]


def _usable_at_the_broker(aws: Any, broker: Any) -> list[str]:
    """Certificates the broker would admit, each for a device that is not active with it."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding as Enc

    from local.mqtt_front import Admission

    wrong: list[str] = []
    usable: Counter[str] = Counter()
    for cert in aws.iot.list_certificates()["certificates"]:
        if cert["status"] != "ACTIVE":
            continue  # refused at connect whatever else holds
        description = aws.iot.describe_certificate(certificateId=cert["certificateId"])[
            "certificateDescription"
        ]
        der = x509.load_pem_x509_certificate(description["certificatePem"].encode()).public_bytes(Enc.DER)
        for thing in aws.iot.list_principal_things(principal=cert["certificateArn"])["things"]:
            if not isinstance(broker.authorize(der, thing), Admission):
                continue
            usable[thing] += 1
            record = rawdb.get(thing, consistent=True) or {}
            if record.get("state") != c.STATE_ACTIVE or record.get("certificateId") != cert["certificateId"]:
                wrong.append(
                    f"certificate {cert['certificateId'][:12]} is usable at the broker as {thing}, which is "
                    f"{record.get('state', 'deleted')} with certificate {str(record.get('certificateId'))[:12]}"
                )
    wrong += [f"{thing} has {n} usable certificates" for thing, n in usable.items() if n > 1]
    return wrong


def _violations(aws: Any, broker: Any, jobs: list[Job], results: list[Any]) -> list[str]:
    found: list[str] = []
    for job, result in zip(jobs, results, strict=True):
        if isinstance(result, BaseException):
            found.append(f"{job.label} raised {type(result).__name__}: {result}")
        elif result[0] >= 500:
            found.append(f"{job.label} answered {result[0]}: {result[1]}")
    found += [f"invariant: {p}" for p in invariants.check()]
    found += _usable_at_the_broker(aws, broker)
    if len(jobs) == 1 and jobs[0].expect is not None and not isinstance(results[0], BaseException):
        broken = jobs[0].expect(*results[0])
        if broken:
            found.append(f"model: after {jobs[0].label} ({results[0][0]}): {broken}")
    return found


def run_schedule(aws: Any, lab: Lab, broker: Any, seed: int, steps: int) -> Counter[str]:
    """One interleaving; raises AssertionError with the schedule at the first violation."""
    rng = random.Random(seed)
    _clear(aws)
    world = _world(lab, rng)
    _prelude(world)
    for step in range(steps):
        jobs = _step(world)
        stagger = [0.0] + [rng.uniform(0, 0.03) for _ in jobs[1:]]
        calls = [lambda j=j, d=d: (time.sleep(d), j.call())[1] for j, d in zip(jobs, stagger, strict=True)]
        results = run_together(*calls) if len(calls) > 1 else [_solo(calls[0])]
        world.log.append(
            f"{step}: "
            + " || ".join(
                f"{j.label} -> {r[0] if isinstance(r, tuple) else type(r).__name__}"
                for j, r in zip(jobs, results, strict=True)
            )
        )
        found = _violations(aws, broker, jobs, results)
        assert not found, (
            f"seed {seed}, step {step}:\n  " + "\n  ".join(found) + "\nschedule:\n  " + "\n  ".join(world.log)
        )
        for job, result in zip(jobs, results, strict=True):
            job.after(*result)
            world.statuses[f"{job.label.split()[0]} {result[0]}"] += 1
    return world.statuses


def _solo(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except Exception as exc:
        return exc


def _run(strict: Any, lab: Lab, seeds: range, steps: int) -> None:
    broker = _broker(strict)
    owner_apis()
    started = time.monotonic()
    statuses: Counter[str] = Counter()
    for seed in seeds:
        statuses += run_schedule(strict, lab, broker, seed, steps)
    five = sum(n for k, n in statuses.items() if k.split()[-1].startswith("5"))
    assert five == 0
    print(
        f"\ninterleavings {seeds.start}-{seeds.stop - 1}: {len(seeds)} schedules x {steps} steps, "
        f"0 violations, {five} 5xx, {time.monotonic() - started:.1f}s; answers {dict(sorted(statuses.items()))}"
    )


@pytest.mark.parametrize(
    "seeds", [range(i, i + CHUNK) for i in range(0, SCHEDULES, CHUNK)], ids=lambda r: f"seeds-{r.start}"
)
def test_random_interleavings_keep_every_invariant(strict: Any, lab: Lab, seeds: range) -> None:
    _run(strict, lab, seeds, STEPS)


@pytest.mark.fuzz
@pytest.mark.timeout(1200)
@pytest.mark.parametrize(
    "seeds",
    [range(i, i + 2 * CHUNK) for i in range(10_000, 10_000 + FUZZ_SCHEDULES, 2 * CHUNK)],
    ids=lambda r: f"seeds-{r.start}",
)
def test_random_interleavings_keep_every_invariant_long(strict: Any, lab: Lab, seeds: range) -> None:
    _run(strict, lab, seeds, FUZZ_STEPS)
