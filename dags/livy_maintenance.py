from airflow_provider_livy.dags.livy_maintenance import livy_maintenance_dag

dag = livy_maintenance_dag()
