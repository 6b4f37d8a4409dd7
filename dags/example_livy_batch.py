from airflow_provider_livy.dags.example_livy_batch import example_livy_batch_dag

dag = example_livy_batch_dag()
