"""cdk-nag (3.x) acknowledgments, always with a reason a security reviewer can check."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk import Acknowledgment, Stack, Validations
from constructs import IConstruct


def acknowledge(scope: IConstruct, rule_id: str, reason: str) -> None:
    """Acknowledge one cdk-nag finding on `scope` and everything below it.

    cdk-nag 3 matches ids exactly: a finding with a suffix (`AwsSolutions-IAM5[Resource::*]`) is
    acknowledged only by that full id, so each wildcard is reasoned for separately.
    """
    if len(reason.split()) < 8:
        raise ValueError(f"{rule_id}: give a real reason, not {reason!r}")
    Validations.of(scope).acknowledge(Acknowledgment(id=rule_id, reason=reason))


def acknowledge_wildcard_resource(scope: IConstruct, resource: str, reason: str) -> None:
    """Acknowledge `AwsSolutions-IAM5[Resource::<resource as cdk-nag prints it>]` for a (token) ARN."""
    acknowledge(scope, f"AwsSolutions-IAM5[Resource::{flatten(scope, resource)}]", reason)


def flatten(scope: IConstruct, value: str) -> str:
    """Render a (token) string the way cdk-nag names a finding: `<Id.Arn>`, `<AWS::Region>`, joins inlined."""
    return _visit(Stack.of(scope).resolve(value))


def _visit(node: Any) -> str:
    if node is None:
        return ""
    if isinstance(node, str):
        return node.replace("${", "<").replace("}", ">")
    if isinstance(node, dict):
        if "Fn::Join" in node:
            delimiter, items = node["Fn::Join"]
            return delimiter.join(_visit(item) for item in items)
        if "Fn::Sub" in node:
            return _visit(node["Fn::Sub"])
        if "Fn::GetAtt" in node:
            resource, attribute = node["Fn::GetAtt"]
            return f"<{_visit(resource)}.{_visit(attribute)}>"
        if "Fn::ImportValue" in node:
            return _visit(node["Fn::ImportValue"])
        if "Ref" in node:
            return f"<{_visit(node['Ref'])}>"
    return json.dumps(node, separators=(",", ":"))
