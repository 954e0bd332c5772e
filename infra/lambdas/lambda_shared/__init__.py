"""What both Lambdas share: the decision log, S3 error classification, environment parsing and AWS clients.

Standard library and boto3 only (the Lambda asset holds this package beside ``contract/``, ``trigger/`` and
``metrics/``: infra/lambda_asset.py).
"""
