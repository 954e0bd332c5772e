"""Our patches over moto 5.2.5, one module per service (see localcloud/README.md for the table of gaps).

Dependency order, bottom up (no module imports one above it; ``tests/localcloud/test_localcloud_imports.py``):
:mod:`~localcloud.endpoints`, :mod:`.registry` -> :mod:`.lambda_sqs` -> :mod:`.events` -> :mod:`.s3_events`,
:mod:`.cloudwatch`; :mod:`.cfn` (-> :mod:`.lambda_sqs`); :mod:`.sagemaker`. :mod:`localcloud.moto_patches` applies
them all. This ``__init__`` imports nothing, so importing one module does not import the others.
"""
