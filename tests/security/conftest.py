"""The security tests reuse the unit fixtures (in-process moto, signed device requests)."""

from tests.unit.lambdas.conftest import (  # noqa: F401 (fixtures)
    _serialize_moto_requests,
    _share_botocore_session,
    aws,
    device_key,
    reset_caches,
    signed_event_fixture,
    test_ca,
)
