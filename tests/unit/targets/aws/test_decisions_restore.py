"""restore_settings: what a snapshot restore carries over from the RDS instance it replaces."""

from __future__ import annotations

from targets.aws.decisions import restore_settings

ROLE = "arn:aws:iam::123456789012:role/rds-monitoring"

# A describe_db_instances entry shaped like the real one (only the keys that matter here, plus
# some that must not be carried).
OLD = {
    "DBInstanceIdentifier": "flowmasters-prod",
    "DBInstanceArn": "arn:aws:rds:eu-west-1:123456789012:db:flowmasters-prod",
    "DBInstanceClass": "db.t4g.medium",
    "DBInstanceStatus": "available",
    "DeletionProtection": True,
    "BackupRetentionPeriod": 14,
    "PreferredBackupWindow": "03:00-03:30",
    "PreferredMaintenanceWindow": "sun:04:00-sun:04:30",
    "DBParameterGroups": [
        {"DBParameterGroupName": "fm-postgres16", "ParameterApplyStatus": "in-sync"},
        {"DBParameterGroupName": "second", "ParameterApplyStatus": "in-sync"},
    ],
    "CopyTagsToSnapshot": True,
    "IAMDatabaseAuthenticationEnabled": True,
    "AutoMinorVersionUpgrade": True,
    "MaxAllocatedStorage": 100,
    "PerformanceInsightsEnabled": True,
    "MonitoringInterval": 60,
    "MonitoringRoleArn": ROLE,
    "EnabledCloudwatchLogsExports": ["postgresql", "upgrade"],
}
TAGS = [
    {"Key": "team", "Value": "flowmasters"},
    {"Key": "aws:cloudformation:stack-name", "Value": "fm-prod"},
    {"Key": "AWS:other", "Value": "x"},
    {"Key": "empty-value", "Value": ""},
]


def test_everything_set_is_carried_split_by_the_call_that_accepts_it():
    assert restore_settings(OLD, TAGS) == (
        {
            "DeletionProtection": True,
            "CopyTagsToSnapshot": True,
            "EnableIAMDatabaseAuthentication": True,
            "AutoMinorVersionUpgrade": True,
            "EnableCloudwatchLogsExports": ["postgresql", "upgrade"],
            "DBParameterGroupName": "fm-postgres16",
            "Tags": [
                {"Key": "team", "Value": "flowmasters"},
                {"Key": "empty-value", "Value": ""},
            ],
        },
        {
            "BackupRetentionPeriod": 14,
            "PreferredBackupWindow": "03:00-03:30",
            "PreferredMaintenanceWindow": "sun:04:00-sun:04:30",
            "MaxAllocatedStorage": 100,
            "EnablePerformanceInsights": True,
            "MonitoringInterval": 60,
            "MonitoringRoleArn": ROLE,
        },
    )


def test_false_and_zero_are_settings_none_and_empty_are_not():
    old = {
        "DeletionProtection": False,
        "AutoMinorVersionUpgrade": False,
        "CopyTagsToSnapshot": None,
        "IAMDatabaseAuthenticationEnabled": None,
        "EnabledCloudwatchLogsExports": [],
        "DBParameterGroups": [],
        "BackupRetentionPeriod": 0,
        "PreferredBackupWindow": "",
        "PreferredMaintenanceWindow": None,
        "PerformanceInsightsEnabled": False,
        "MonitoringInterval": 0,
        "MonitoringRoleArn": ROLE,  # meaningless without an interval: RDS would refuse it
    }
    assert restore_settings(old, []) == (
        {"DeletionProtection": False, "AutoMinorVersionUpgrade": False},
        {"BackupRetentionPeriod": 0, "EnablePerformanceInsights": False, "MonitoringInterval": 0},
    )


def test_nothing_set_carries_nothing():
    assert restore_settings({}) == ({}, {})
    assert restore_settings({"DBParameterGroups": [{"DBParameterGroupName": ""}]}, None) == ({}, {})


def test_only_aws_tags_carry_no_tags():
    restore, _ = restore_settings({}, [{"Key": "aws:cloudformation:logical-id", "Value": "Db"}])
    assert restore == {}


def test_the_old_instance_is_not_changed():
    old = {**OLD, "DBParameterGroups": [dict(g) for g in OLD["DBParameterGroups"]]}
    before = repr(old)
    restore_settings(old, TAGS)
    assert repr(old) == before
