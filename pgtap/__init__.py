"""Test infrastructure: throwaway PostgreSQL cluster and pgTAP runner for pytest."""
