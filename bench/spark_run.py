"""Run the job's Spark engine on a chosen local master, for the benchmark (`python -m bench.spark_run`).

``python -m bench.spark_run --master local[2] --driver-memory 8g -- --input FILE --output DIR`` starts the session
itself (the engine uses the active session), runs ``processing.cli.main(["--engine", "spark", ...])``, then stops
Spark and waits for the JVM to exit, so the benchmark's ``wait4`` peak RSS covers the JVM (this process's waited-for
child) as well as the Python driver.
"""
from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.spark_run", description=__doc__)
    parser.add_argument("--master", default="local[*]")
    parser.add_argument("--driver-memory", default="8g")
    parser.add_argument("job_args", nargs=argparse.REMAINDER, help="-- then the job's arguments")
    args = parser.parse_args(argv)
    job_args = args.job_args[1:] if args.job_args[:1] == ["--"] else args.job_args

    from pyspark.context import SparkContext
    from pyspark.sql import SparkSession

    from processing import cli

    # The engine's own session settings (processing.spark.engine.session), plus the master and driver memory.
    spark = (SparkSession.builder.master(args.master).appName("processing")
             .config("spark.driver.memory", args.driver_memory)
             .config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false")
             .config("spark.pyspark.python", sys.executable)
             .config("spark.sql.session.timeZone", "UTC")
             .config("spark.sql.shuffle.partitions", str(max(2, os.cpu_count() or 2)))
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    code = cli.main(["--engine", "spark", *job_args])
    gateway = SparkContext._gateway
    spark.stop()
    if gateway is not None:
        proc = getattr(gateway, "proc", None)
        gateway.shutdown()
        if proc is not None:
            if proc.stdin is not None:
                proc.stdin.close()  # the JVM exits when its stdin closes (pyspark's launch contract)
            proc.wait()
    return code


if __name__ == "__main__":
    sys.exit(main())
