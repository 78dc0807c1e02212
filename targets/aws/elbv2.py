"""ELBv2: the ALB target groups in front of the services."""

from __future__ import annotations

from typing import Any

from domain.errors import ReleaseError
from targets.aws.decisions import serving_target_groups


def describe_groups(elb: Any, arns: list[str]) -> str:
    """verify's probe: the target groups exist (their names)."""
    found = elb.describe_target_groups(TargetGroupArns=arns)["TargetGroups"]
    return ", ".join(g["TargetGroupName"] for g in found)


def healthy_targets(elb: Any, service: str, arn: str) -> str:
    """How many of `service`'s targets are healthy; none is a ReleaseError naming their states."""
    health = elb.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
    states = [h["TargetHealth"]["State"] for h in health]
    healthy = states.count("healthy")
    if not healthy:
        raise ReleaseError(
            f"load balancer: {service} has no healthy target in {arn} "
            f"({', '.join(states) or 'no targets'})"
        )
    return f"{service} {healthy}/{len(states)} targets healthy"


def serving_groups(elb: Any, rule_arns: list[str]) -> list[str]:
    """The target groups these listener rules send traffic to (weight above 0)."""
    rules = elb.describe_rules(RuleArns=rule_arns)["Rules"]
    return sorted({group for rule in rules for group in serving_target_groups(rule)})
