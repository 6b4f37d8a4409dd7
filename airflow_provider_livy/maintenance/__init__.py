"""The maintenance sweep: what clients, crashes and servers left behind, removed from the REST API and ZooKeeper.

`rest_sweep` deletes expired finished sessions through the server's API, `zookeeper_sweep` removes
recovery records nobody will use again, `report` counts both; `tasks` is what the DAG calls.
"""
