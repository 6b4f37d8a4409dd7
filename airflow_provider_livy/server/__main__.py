"""`python -m airflow_provider_livy.server` is the same as the `livy-server` command."""

import sys

from airflow_provider_livy.server.cli import main

sys.exit(main())
