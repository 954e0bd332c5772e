"""Entry script of the Spark job on SageMaker: ``smspark-submit --py-files <bundle> <this file> ARGS`` runs it on the
primary instance with ``spark-submit --master yarn --deploy-mode client``; the processing code bundle (``processing/``
and ``contract/`` at its root) is on ``sys.path`` through ``--py-files``. ``ARGS`` are the job's (``--engine spark
--input s3://... --output s3://...``, see infra/lambdas/trigger/spark.py); the exit status is the job's (0 ok, 2 an
expected failure, 1 an unexpected one; the message goes to /opt/ml/output/message).

Standard library only at import: the CDK app publishes this file on its own as the job's ``code`` input.
"""

import sys


def main() -> int:
    from processing.cli import main as cli_main

    return cli_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
