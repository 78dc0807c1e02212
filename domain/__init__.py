"""The domain model: environments, services, checks, versions, step results, records and errors.

Plain frozen values every layer may import (flows, tasks, blocks, targets); nothing here imports
an SDK (no Prefect, docker or boto3), so each rule is tested by equality on plain data.
"""
