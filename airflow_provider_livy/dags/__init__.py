"""The DAGs that ship with the provider, each built by a function, so a dags folder needs only two lines:

    from airflow_provider_livy.dags.livy_maintenance import livy_maintenance_dag
    dag = livy_maintenance_dag()

The DAG then comes from the installed package: upgrading the provider upgrades the DAG, and there is
one definition, not a copy per deployment.
"""
