"""The SparkSession the engine runs in (shared by ``engine`` and ``hadoopfs``)."""

from __future__ import annotations

import os
import sys
from typing import Any


def session(master: str = "local[*]", *, submitted: bool = False) -> Any:
    """The active SparkSession, or a new local one whose Python workers run this interpreter (``spark.pyspark.python``,
    what ``PYSPARK_PYTHON`` sets; the engine runs no Python UDFs, but a worker started for anything gets the same
    libraries).

    ``submitted``: this driver was started by ``spark-submit`` (``smspark-submit`` on SageMaker, which passes
    ``--master yarn``; the command line tells, from ``PYSPARK_GATEWAY_PORT``): only the session time zone is set, so
    the master, the Python of the executors and the partitions come from spark-submit and ``configuration.json`` (a
    builder option would override them)."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    if submitted:
        started = (SparkSession.builder.appName("processing").config("spark.sql.session.timeZone", "UTC")
                     .getOrCreate())
        started.sparkContext.setLogLevel("ERROR")
        return started
    spark = (SparkSession.builder.master(master).appName("processing")
            .config("spark.ui.enabled", "false")
            .config("spark.pyspark.python", sys.executable)
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.shuffle.partitions", str(max(2, os.cpu_count() or 2)))
            .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")  # the CSV header check warns for our positional schema (_c0, ...)
    return spark
