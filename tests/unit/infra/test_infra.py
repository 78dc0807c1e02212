"""infra/: the CloudFormation template lints clean and keeps its safety properties, and the
release pipeline's IAM policy is scoped to the names that template creates.

Offline only: cfn-lint reads its bundled AWS schemas, nothing here calls AWS.
"""

from __future__ import annotations

import json
import re
from fnmatch import fnmatchcase
from functools import cache
from pathlib import Path

import pytest
from cfnlint.api import ManualArgs, lint, lint_file
from cfnlint.data import AdditionalSpecs
from cfnlint.decode.cfn_yaml import loads
from cfnlint.helpers import load_resource

INFRA = Path(__file__).resolve().parents[3] / "infra"
TEMPLATE = INFRA / "cloudformation" / "flowmasters.yaml"
POLICY = INFRA / "iam" / "release-pipeline-policy.json"

# What the release pipeline reads from the stack (infra/README.md, "Outputs").
PIPELINE_OUTPUTS = [
    "ClusterName",
    "BackendServiceName",
    "FrontendServiceName",
    "BackendRepositoryUri",
    "BackendMigratorRepositoryUri",
    "FrontendRepositoryUri",
    "DBInstanceIdentifier",
    "DistributionId",
    "DistributionDomainName",
    "LoadBalancerDNSName",
    "BackendTargetGroupArn",
    "FrontendTargetGroupArn",
    "MediaBucketName",
    "PrivateSubnetIds",
    "ServiceSecurityGroupId",
    "BackendTaskDefinitionArn",
]

# Actions that cfn-lint's IAM data says take a resource ARN, but that the policy grants on "*",
# and why. Anything else on "*" must be an action without resource-level permissions.
WILDCARD_BY_NECESSITY = {
    "ecs:RegisterTaskDefinition": "granted on '*' as ECS long required; narrow once verified in IAM",
    "ecs:ListTasks": "Fargate has no container instances to name; the statement is conditioned on ecs:cluster",
}

ENV = "staging"
ACCOUNT = "123456789012"
REGION = "eu-west-1"


# ------------------------------------------------------------------ helpers


@cache
def template() -> dict:
    return loads(TEMPLATE.read_text(), str(TEMPLATE))


@cache
def policy() -> dict:
    return json.loads(POLICY.read_text())


def resources_of_type(type_: str) -> dict[str, dict]:
    return {name: r for name, r in template()["Resources"].items() if r["Type"] == type_}


def one_resource(type_: str) -> tuple[str, dict]:
    found = resources_of_type(type_)
    assert len(found) == 1, f"expected one {type_}, found {sorted(found)}"
    return next(iter(found.items()))


def name_for(value, environment: str = ENV) -> str:
    """A resource name from the template (plain or !Sub "…${EnvironmentName}…"), for one environment."""
    if isinstance(value, dict):
        assert list(value) == ["Fn::Sub"], f"unexpected name form {value}"
        value = value["Fn::Sub"]
    assert isinstance(value, str)
    name = value.replace("${EnvironmentName}", environment)
    assert "${" not in name, f"{value} depends on more than EnvironmentName"
    return name


def statements() -> list[dict]:
    return policy()["Statement"]


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def allows(action: str, resource: str) -> bool:
    """Whether an Allow statement names this action and a resource pattern matching this ARN.

    IAM wildcards: `*` matches any run of characters (across `:` and `/`), `?` any one character.
    Conditions are not evaluated here; tests about conditions check them directly.
    """
    return any(
        s["Effect"] == "Allow"
        and any(fnmatchcase(action.lower(), a.lower()) for a in as_list(s["Action"]))
        and any(fnmatchcase(resource, r) for r in as_list(s["Resource"]))
        for s in statements()
    )


def arn(service: str, resource: str, region: str = REGION) -> str:
    return f"arn:aws:{service}:{region}:{ACCOUNT}:{resource}"


def format_matches(matches) -> str:
    return "\n".join(f"{m.rule.id} {m.message} ({m.filename}:{m.linenumber})" for m in matches)


# ------------------------------------------------------------------ the template


def test_template_passes_cfn_lint_without_errors_or_warnings():
    matches = lint_file(TEMPLATE, ManualArgs(regions=["us-east-1", "eu-west-1"]))
    problems = [m for m in matches if m.rule.id[0] in "EW"]

    assert problems == [], "cfn-lint found:\n" + format_matches(problems)


def test_ecr_repositories_are_immutable_scanned_and_keep_the_last_30_images():
    repositories = resources_of_type("AWS::ECR::Repository")
    names = sorted(name_for(r["Properties"]["RepositoryName"]) for r in repositories.values())

    assert names == [
        f"flowmasters-{ENV}/backend",
        f"flowmasters-{ENV}/backend-migrator",
        f"flowmasters-{ENV}/frontend",
    ]
    for name, repository in repositories.items():
        props = repository["Properties"]
        assert props["ImageTagMutability"] == "IMMUTABLE", name
        assert props["ImageScanningConfiguration"] == {"ScanOnPush": True}, name
        (rule,) = json.loads(props["LifecyclePolicy"]["LifecyclePolicyText"])["rules"]
        assert rule["selection"]["countType"] == "imageCountMoreThan", name
        assert rule["selection"]["countNumber"] == 30, name
        assert rule["action"] == {"type": "expire"}, name


def test_both_ecs_services_roll_back_a_failed_deployment_and_never_drop_below_desired():
    services = resources_of_type("AWS::ECS::Service")

    assert sorted(s["Properties"]["ServiceName"] for s in services.values()) == [
        "backend",
        "frontend",
    ]
    for name, service in services.items():
        props = service["Properties"]
        deployment = props["DeploymentConfiguration"]
        assert deployment["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}, name
        assert deployment["MinimumHealthyPercent"] == 100, name
        assert deployment["MaximumPercent"] == 200, name
        assert props["LaunchType"] == "FARGATE", name
        assert props["HealthCheckGracePeriodSeconds"] > 0, name
        assert props["NetworkConfiguration"]["AwsvpcConfiguration"]["AssignPublicIp"] == "DISABLED"
        (target,) = props["LoadBalancers"]
        assert "Ref" in target["TargetGroupArn"], name


def test_task_definitions_are_fargate_awsvpc_and_the_backend_reads_its_password_from_secrets():
    definitions = {
        d["Properties"]["ContainerDefinitions"][0]["Name"]: d["Properties"]
        for d in resources_of_type("AWS::ECS::TaskDefinition").values()
    }
    assert sorted(definitions) == ["backend", "frontend"]
    for props in definitions.values():
        assert props["RequiresCompatibilities"] == ["FARGATE"]
        assert props["NetworkMode"] == "awsvpc"

    backend = definitions["backend"]["ContainerDefinitions"][0]
    assert backend["PortMappings"][0]["ContainerPort"] == 3001
    assert backend["HealthCheck"]["Command"] == {"Ref": "BackendHealthCheckCommand"}
    environment = {e["Name"]: e["Value"] for e in backend["Environment"]}
    assert environment["PORT"] == "3001"
    assert environment["PGHOST"] == {"Fn::GetAtt": ["Database", "Endpoint.Address"]}
    assert not any("PASSWORD" in key or "SECRET" in key for key in environment)
    secrets = {s["Name"]: s["ValueFrom"] for s in backend["Secrets"]}
    assert secrets["PGPASSWORD"] == {"Fn::Sub": "${DatabaseSecret}:password::"}

    frontend = definitions["frontend"]["ContainerDefinitions"][0]
    assert frontend["PortMappings"][0]["ContainerPort"] == 3000
    assert "BACKEND_URL" in {e["Name"] for e in frontend["Environment"]}


def test_container_health_checks_default_to_node_asking_api_health():
    """ECS ignores the image's HEALTHCHECK; the Node images have no curl or python. The list is
    comma-delimited, so a comma in the script would cut it in pieces."""
    parameters = template()["Parameters"]

    assert parameters["BackendHealthCheckPath"]["Default"] == "/api/health"
    for name in ("BackendHealthCheckCommand", "FrontendHealthCheckCommand"):
        kind, program, flag, script = parameters[name]["Default"].split(",")
        assert (kind, program, flag) == ("CMD", "node", "-e")
        assert "'http://127.0.0.1:'+process.env.PORT+'/api/health'" in script


def test_database_is_encrypted_snapshotted_on_delete_and_its_password_is_no_parameter():
    _, database = one_resource("AWS::RDS::DBInstance")
    props = database["Properties"]

    assert props["Engine"] == "postgres"
    assert re.fullmatch(r"1[56](\.\d+)?", template()["Parameters"]["DBEngineVersion"]["Default"])
    assert props["StorageEncrypted"] is True
    assert database["DeletionPolicy"] == "Snapshot"
    assert database["UpdateReplacePolicy"] == "Snapshot"
    assert props["PubliclyAccessible"] is False
    assert template()["Parameters"]["DBBackupRetentionDays"]["MinValue"] >= 7
    assert name_for(props["DBInstanceIdentifier"]) == f"flowmasters-{ENV}"

    # No password travels as a parameter value, NoEcho or not.
    parameters = template()["Parameters"]
    assert not [p for p in parameters if "password" in p.lower()]
    assert not [p for p, spec in parameters.items() if spec.get("NoEcho")]
    if props.get("ManageMasterUserPassword") is not True:
        # ... so the password is a dynamic reference into a generated Secrets Manager secret.
        password = props["MasterUserPassword"]
        assert list(password) == ["Fn::Sub"], password
        reference = re.fullmatch(
            r"\{\{resolve:secretsmanager:\$\{(\w+)\}:SecretString:password\}\}",
            password["Fn::Sub"],
        )
        assert reference, password
        secret = template()["Resources"][reference.group(1)]
        assert secret["Type"] == "AWS::SecretsManager::Secret"
        assert secret["Properties"]["GenerateSecretString"]["GenerateStringKey"] == "password"
        assert "SecretString" not in secret["Properties"]


def test_database_and_cache_accept_only_the_service_security_group():
    groups = template()["Resources"]
    for group, port in (("DatabaseSecurityGroup", 5432), ("CacheSecurityGroup", 6379)):
        (rule,) = groups[group]["Properties"]["SecurityGroupIngress"]
        assert (rule["FromPort"], rule["ToPort"]) == (port, port), group
        assert rule["SourceSecurityGroupId"] == {"Ref": "ServiceSecurityGroup"}, group
        assert "CidrIp" not in rule, group
    service_rules = groups["ServiceSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert sorted(r["FromPort"] for r in service_rules) == [3000, 3001]
    assert all(
        r["SourceSecurityGroupId"] == {"Ref": "LoadBalancerSecurityGroup"} for r in service_rules
    )


def test_media_bucket_blocks_public_access_is_versioned_encrypted_and_retained():
    _, bucket = one_resource("AWS::S3::Bucket")
    props = bucket["Properties"]

    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert bucket["DeletionPolicy"] == "Retain"


def test_cdn_never_caches_the_api_or_the_admin_and_caches_static_assets():
    """The Docker host's CDN rules (docs/cdn.md), on CloudFront."""
    _, distribution = one_resource("AWS::CloudFront::Distribution")
    config = distribution["Properties"]["DistributionConfig"]
    behaviors = {b["PathPattern"]: b for b in config["CacheBehaviors"]}
    caching_disabled = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
    caching_optimized = "658327ea-f89d-4fab-a63d-7e88639e058f"

    assert behaviors["/api/*"]["CachePolicyId"] == caching_disabled
    assert behaviors["/admin*"]["CachePolicyId"] == caching_disabled
    assert behaviors["/_next/static/*"]["CachePolicyId"] == caching_optimized
    for behavior in [*behaviors.values(), config["DefaultCacheBehavior"]]:
        assert behavior["ViewerProtocolPolicy"] == "redirect-to-https"


def test_both_services_read_the_shared_cache_over_tls():
    for name in ("BackendTaskDefinition", "FrontendTaskDefinition"):
        (container,) = template()["Resources"][name]["Properties"]["ContainerDefinitions"]
        env = {e["Name"]: e.get("Value") for e in container["Environment"]}
        assert env["REDIS_URL"]["Fn::Sub"].startswith("rediss://"), name


def test_cdn_keeps_pages_only_as_the_app_says_and_never_one_persons():
    _, distribution = one_resource("AWS::CloudFront::Distribution")
    pages = distribution["Properties"]["DistributionConfig"]["DefaultCacheBehavior"]
    _, policy = one_resource("AWS::CloudFront::CachePolicy")
    _, origin = one_resource("AWS::CloudFront::OriginRequestPolicy")
    config = policy["Properties"]["CachePolicyConfig"]
    key = config["ParametersInCacheKeyAndForwardedToOrigin"]

    assert pages["CachePolicyId"] == {"Ref": "PagesCachePolicy"}
    assert pages["OriginRequestPolicyId"] == {"Ref": "PagesOriginRequestPolicy"}
    assert (config["MinTTL"], config["DefaultTTL"]) == (0, 0)  # only what the app marks
    assert key["CookiesConfig"] == {"CookieBehavior": "none"}
    assert origin["Properties"]["OriginRequestPolicyConfig"]["CookiesConfig"] == {
        "CookieBehavior": "none"
    }
    assert {"RSC", "Next-Router-State-Tree"} <= set(key["HeadersConfig"]["Headers"])


@pytest.mark.parametrize("output", PIPELINE_OUTPUTS)
def test_pipeline_output_exists_and_is_exported_under_the_stack_name(output):
    outputs = template()["Outputs"]

    assert output in outputs
    assert outputs[output]["Export"]["Name"] == {"Fn::Sub": f"${{AWS::StackName}}-{output}"}


def test_private_subnet_ids_output_is_comma_joined():
    value = template()["Outputs"]["PrivateSubnetIds"]["Value"]

    assert value == {"Fn::Join": [",", [{"Ref": "PrivateSubnet1"}, {"Ref": "PrivateSubnet2"}]]}


# ------------------------------------------------------------------ the pipeline's IAM policy


def test_policy_parses_and_every_statement_has_a_unique_sid():
    document = policy()
    sids = [s.get("Sid") for s in document["Statement"]]

    assert document["Version"] == "2012-10-17"
    assert all(sids), "a statement has no Sid"
    assert len(set(sids)) == len(sids), f"duplicate Sids: {sids}"
    assert all(s["Effect"] == "Allow" for s in document["Statement"])


def test_no_statement_grants_every_action_of_a_service():
    for statement in statements():
        for action in as_list(statement["Action"]):
            assert action != "*", statement["Sid"]
            assert "*" not in action, f"{statement['Sid']}: wildcard action {action}"


def test_policy_actions_exist_according_to_cfn_lint():
    wrapper = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {
            "ReleasePipelinePolicy": {
                "Type": "AWS::IAM::ManagedPolicy",
                "Properties": {"PolicyDocument": policy()},
            }
        },
    }
    problems = [m for m in lint(json.dumps(wrapper)) if m.rule.id[0] in "EW"]

    assert problems == [], format_matches(problems)


def test_resource_star_only_for_actions_without_resource_level_permissions():
    services = load_resource(AdditionalSpecs, "Policies.json")
    for statement in statements():
        if statement["Resource"] != "*":
            continue
        for action in as_list(statement["Action"]):
            service, name = action.split(":")
            resource_types = services[service]["Actions"][name.lower()].get("Resources")
            assert not resource_types or action in WILDCARD_BY_NECESSITY, (
                f"{statement['Sid']}: {action} supports {resource_types}; scope it to an ARN"
            )


def test_pass_role_only_for_the_two_ecs_task_roles_and_only_to_ecs_tasks():
    pass_role = [s for s in statements() if "iam:PassRole" in as_list(s["Action"])]

    assert pass_role, "no iam:PassRole statement"
    every_role = {
        name_for(r["Properties"]["RoleName"]) for r in resources_of_type("AWS::IAM::Role").values()
    }
    # ECS's infrastructure role (blue/green: ECS moves the listener weights) is given to the
    # services by CloudFormation, never passed by the pipeline, which must not be able to.
    infrastructure = f"flowmasters-{ENV}-ecs-infrastructure"
    roles = every_role - {infrastructure}
    assert roles == {f"flowmasters-{ENV}-ecs-task-execution", f"flowmasters-{ENV}-ecs-task"}
    assert infrastructure in every_role
    assert not allows("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/{infrastructure}")
    for statement in pass_role:
        assert as_list(statement["Action"]) == ["iam:PassRole"], statement["Sid"]
        assert statement["Condition"] == {
            "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
        }, statement["Sid"]
        assert "*" not in as_list(statement["Resource"])
    for role in roles:
        assert allows("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/{role}"), role
    assert not allows("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/admin")


def test_policy_cannot_delete_data_or_infrastructure():
    destructive = [
        action
        for s in statements()
        for action in as_list(s["Action"])
        if action.split(":")[1].startswith(("Delete", "Deregister", "Remove", "Terminate"))
    ]

    # Deleting the empty change set of a no-op provision is the only removal the pipeline does;
    # the old database of a restore swap stays until a person deletes it.
    assert destructive == ["cloudformation:DeleteChangeSet"]
    assert not allows(
        "rds:DeleteDBInstance", arn("rds", f"db:flowmasters-{ENV}-old-20260101120000")
    )


def test_policy_covers_the_names_the_template_creates():
    props = {name: r.get("Properties", {}) for name, r in template()["Resources"].items()}
    cluster = name_for(props["Cluster"]["ClusterName"])
    database = name_for(props["Database"]["DBInstanceIdentifier"])
    snapshot = f"{database}-staging-v1-2-0-20260101120000"  # flowmasters-<release id>, sanitised
    restored = f"{database}-restore-20260101120000"
    stack = arn("cloudformation", f"stack/flowmasters-{ENV}/0f1e2d3c")
    logs = name_for(props["BackendLogGroup"]["LogGroupName"])
    repositories = [
        arn("ecr", f"repository/{name_for(r['Properties']['RepositoryName'])}")
        for r in resources_of_type("AWS::ECR::Repository").values()
    ]

    expected = [
        ("cloudformation:CreateChangeSet", stack),
        ("cloudformation:DescribeChangeSet", stack),
        ("cloudformation:ExecuteChangeSet", stack),
        ("cloudformation:DescribeStacks", stack),
        *[(action, r) for r in repositories for action in ("ecr:PutImage", "ecr:BatchGetImage")],
        ("ecs:DescribeClusters", arn("ecs", f"cluster/{cluster}")),
        ("ecs:UpdateService", arn("ecs", f"service/{cluster}/backend")),
        ("ecs:DescribeServices", arn("ecs", f"service/{cluster}/frontend")),
        (
            "ecs:RunTask",
            arn("ecs", f"task-definition/{name_for(props['BackendTaskDefinition']['Family'])}:12"),
        ),
        ("ecs:DescribeTasks", arn("ecs", f"task/{cluster}/4f0c9a")),
        ("ecs:StopTask", arn("ecs", f"task/{cluster}/4f0c9a")),
        ("logs:GetLogEvents", arn("logs", f"log-group:{logs}:log-stream:backend/backend/4f0c9a")),
        ("rds:CreateDBSnapshot", arn("rds", f"db:{database}")),
        ("rds:CreateDBSnapshot", arn("rds", f"snapshot:{snapshot}")),
        ("rds:DescribeDBSnapshots", arn("rds", f"snapshot:{snapshot}")),
        ("rds:DescribeDBInstances", arn("rds", f"db:{restored}")),
        ("rds:RestoreDBInstanceFromDBSnapshot", arn("rds", f"db:{restored}")),
        ("rds:RestoreDBInstanceFromDBSnapshot", arn("rds", f"snapshot:{snapshot}")),
        (
            "rds:RestoreDBInstanceFromDBSnapshot",
            arn("rds", f"subgrp:{name_for(props['DBSubnetGroup']['DBSubnetGroupName'])}"),
        ),
        ("rds:ModifyDBInstance", arn("rds", f"db:{database}")),  # rename to ...-old-<ts>
        ("rds:ModifyDBInstance", arn("rds", f"db:{restored}")),  # rename to the original name
    ]

    assert [(a, r) for a, r in expected if not allows(a, r)] == []


@pytest.mark.parametrize(
    ("action", "resource"),
    [
        ("ecr:PutImage", arn("ecr", "repository/other/backend")),
        ("ecr:PutImage", arn("ecr", "repository/flowmasters-staging/api")),
        ("ecs:UpdateService", arn("ecs", "service/billing/backend")),
        ("ecs:RunTask", arn("ecs", "task-definition/flowmasters-staging-frontend:3")),
        ("rds:ModifyDBInstance", arn("rds", "db:billing")),
        (
            "rds:RestoreDBInstanceFromDBSnapshot",
            arn("rds", "snapshot:rds:flowmasters-staging-auto"),
        ),
        ("cloudformation:ExecuteChangeSet", arn("cloudformation", "stack/billing/0f1e2d3c")),
        ("logs:GetLogEvents", arn("logs", "log-group:/aws/lambda/x:log-stream:y")),
        ("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/admin"),
    ],
)
def test_policy_does_not_reach_other_resources(action, resource):
    assert not allows(action, resource)


def test_run_task_and_list_tasks_are_limited_to_flowmasters_clusters():
    for action in ("ecs:RunTask", "ecs:ListTasks"):
        (statement,) = [s for s in statements() if action in as_list(s["Action"])]
        assert statement["Condition"] == {
            "ArnLike": {"ecs:cluster": "arn:aws:ecs:*:*:cluster/flowmasters-*"}
        }, action


def test_pipeline_needs_no_secret_values():
    actions = {a for s in statements() for a in as_list(s["Action"])}

    assert not [a for a in actions if a.startswith(("secretsmanager:", "ssm:", "kms:"))]


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_every_image_an_aws_environment_builds_has_its_repository_in_the_template(
    environment, monkeypatch
):
    """staging/production build the real stack's three images (backend, its migrator,
    frontend); each is pushed to the repository the stack names in an output, so each must
    have one (a missing one fails the release at push, after the builds)."""
    from deployments.register import load_description
    from domain.environment import EnvironmentSpec
    from targets.aws.decisions import output_key

    for name in ("FM_STAGING_URL", "FM_PRODUCTION_URL", "FM_NODE_IMAGE"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    description = load_description(environment)
    spec = EnvironmentSpec(name=environment, services=tuple(description["services"]))
    outputs = template()["Outputs"]
    images = [name for name, _, _ in spec.images()]

    assert images == ["backend-migrator", "backend", "frontend"]
    for image in images:
        output = output_key(image, "RepositoryUri")
        assert output in outputs, output
        resource = outputs[output]["Value"]["Fn::GetAtt"][0]
        repository = template()["Resources"][resource]["Properties"]["RepositoryName"]
        assert name_for(repository, environment) == spec.repository_of(image)
