"""Credentials to a principal (tenant and scopes), and per-tenant rate limits."""
