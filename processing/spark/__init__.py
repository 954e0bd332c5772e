"""The Spark engine (``python -m processing --engine spark``): the default engine's contract in native Spark SQL.

Optional: only imported when ``--engine spark`` is given (pyspark is not needed by the default engine, and the
default engine's modules never import this package; ``tests/processing/test_spark_engine.py`` checks it). It
imports only the standard-library modules it shares with the default engine (``config``, ``drift_config``,
``gate``, ``errors``, ``options``), and pandas/numpy through ``gate.finish`` -> ``drift`` for the drift profile
(both are in the SageMaker Spark image; pyarrow is not, and nothing here needs it). See docs/processing.md
"The Spark engine"."""

from processing.spark.engine import SparkUnsupported, list_inputs, run
from processing.spark.session import session

__all__ = ["SparkUnsupported", "list_inputs", "run", "session"]
