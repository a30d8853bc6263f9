"""Root conftest: registers the PostgreSQL/pgTAP plugin for tests_sql/ and tests_py/."""

pytest_plugins = ["pgtap.pytest_pgtap"]
