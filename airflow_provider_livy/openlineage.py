"""OpenLineage for Livy jobs: the Spark conf that hangs a job's lineage under its Airflow task and
points Spark's OpenLineage listener at Airflow's own HTTP transport.

The keys and their values are the official Livy operator's: both come from the OpenLineage
provider's Spark helpers (`airflow.providers.openlineage.utils.spark`, which the official operator
reaches through `airflow.providers.common.compat.openlineage.utils.spark`). Two rules differ, both
stricter: a key the user set is never overwritten (the official helper replaces a user's
`rootParent*` key), and without the OpenLineage provider the flags say so once and change nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from airflow.sdk import Context
from airflow.sdk import conf as airflow_conf
from airflow.sdk.log import mask_secret

log = logging.getLogger(__name__)

SECTION = "openlineage"
PARENT_JOB_OPTION = "spark_inject_parent_job_info"
TRANSPORT_OPTION = "spark_inject_transport_info"
API_KEY_SUFFIX = "auth.apiKey"


def inject_defaults() -> tuple[bool, bool]:
    """(parent_job, transport): the defaults of the two operator flags, from `[openlineage]`
    spark_inject_parent_job_info and spark_inject_transport_info (both False when unset)."""
    return (
        airflow_conf.getboolean(SECTION, PARENT_JOB_OPTION, fallback=False),
        airflow_conf.getboolean(SECTION, TRANSPORT_OPTION, fallback=False),
    )


def _spark_helpers() -> ModuleType | None:
    """The OpenLineage provider's Spark helpers, or None when the provider is not installed."""
    try:
        from airflow.providers.openlineage.utils import spark
    except ImportError as err:
        log.debug("OpenLineage provider not importable: %s", err)
        return None
    return spark


def spark_conf(conf: Mapping[str, str] | None, context: Context, *, parent_job: bool, transport: bool) -> dict[str, str]:
    """The Spark conf to send for this task instance: the user's `conf`, plus

    - with `parent_job`: spark.openlineage.parentJobNamespace, parentJobName, parentRunId and
      rootParentJobNamespace, rootParentJobName, rootParentRunId of the running task instance;
    - with `transport`: Airflow's OpenLineage HTTP transport as spark.openlineage.transport.*.

    Each group is skipped, as the official helper skips it, when the user already set one of its
    keys (spark.openlineage.parent* / spark.openlineage.transport*); any key the user set keeps the
    user's value. The transport's API key, if any, is masked in the task log from here on.
    """
    user = dict(conf or {})
    if not (parent_job or transport):
        return user
    helpers = _spark_helpers()
    if helpers is None:
        flags = {"openlineage_inject_parent_job_info": parent_job, "openlineage_inject_transport_info": transport}
        log.warning(
            "%s did nothing: the OpenLineage provider (apache-airflow-providers-openlineage) is not installed; "
            "the Spark conf is sent as given",
            " and ".join(name for name, on in flags.items() if on),
        )
        return user
    properties: dict[str, Any] = dict(user)
    if parent_job:
        properties = helpers.inject_parent_job_information_into_spark_properties(properties, context)
    if transport:
        properties = helpers.inject_transport_information_into_spark_properties(properties, context)
    for key, value in properties.items():
        if key.endswith(API_KEY_SUFFIX):  # the transport's API key travels in the conf: keep it out of task logs
            mask_secret(value)
            mask_secret(str(value).removeprefix("Bearer "))
    return {**properties, **user}
