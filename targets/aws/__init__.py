"""The AWS target: ECS services, ECR images, an RDS database, ALB and CloudFront, one stack.

`runtime.AwsRuntime` implements `targets.base.Target`; the judgements it makes on AWS answers are
pure functions in `decisions` so they are tested without AWS.
"""
