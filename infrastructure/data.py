"""DynamoDB tables, one per `definitions.TABLES` entry."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from lambdas import definitions

_PROJECTIONS = {"ALL": dynamodb.ProjectionType.ALL, "KEYS_ONLY": dynamodb.ProjectionType.KEYS_ONLY}


def _key(name: str | None) -> dynamodb.Attribute | None:
    # Every key attribute of Latchkey is a string (ids, hashes, "<timestamp>#<random>").
    return dynamodb.Attribute(name=name, type=dynamodb.AttributeType.STRING) if name else None


class Data(Construct):
    """On-demand tables with PITR, deletion protection and TTL. They outlive the stack (RETAIN)."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.tables: dict[str, dynamodb.Table] = {}
        for spec in definitions.TABLES:
            table = dynamodb.Table(
                self,
                spec.logical_id,
                partition_key=_key(spec.partition_key),
                sort_key=_key(spec.sort_key),
                billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
                point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                    point_in_time_recovery_enabled=True
                ),
                deletion_protection=True,
                time_to_live_attribute=spec.ttl_attribute,
                encryption=dynamodb.TableEncryption.DEFAULT,  # encrypted at rest, AWS-owned key: no KMS cost
                removal_policy=RemovalPolicy.RETAIN,
            )
            for index in spec.indexes:
                table.add_global_secondary_index(
                    index_name=index.name,
                    partition_key=_key(index.partition_key),
                    sort_key=_key(index.sort_key),
                    projection_type=_PROJECTIONS[index.projection],
                )
            self.tables[spec.logical_id] = table
