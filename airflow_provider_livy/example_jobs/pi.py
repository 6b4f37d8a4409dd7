"""Estimate pi with Spark: the bundled example job.

Arguments: [partitions] [--fail] [--linger=SECONDS]. With --fail the job raises after computing,
so the failure path can be shown and tested with a real Spark driver; --linger keeps the driver
up for a while, so there is something running to kill.
"""

import random
import sys
import time

from pyspark.sql import SparkSession


def inside(_: int) -> int:
    x, y = random.random(), random.random()  # noqa: S311 - sampling, not security
    return 1 if x * x + y * y <= 1 else 0


def main(argv: list[str]) -> None:
    partitions = int(argv[0]) if argv and argv[0].isdigit() else 2
    spark = SparkSession.builder.appName("livy-example-pi").getOrCreate()
    samples = 100_000 * partitions
    count = spark.sparkContext.parallelize(range(samples), partitions).map(inside).sum()
    print(f"Pi is roughly {4.0 * count / samples:.5f}", flush=True)
    for arg in argv:
        if arg.startswith("--linger="):
            time.sleep(float(arg.split("=", 1)[1]))
    spark.stop()
    if "--fail" in argv:
        raise SystemExit("failing on purpose (--fail)")


if __name__ == "__main__":
    main(sys.argv[1:])
