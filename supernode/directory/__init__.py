"""Accounts, device presence records and leases: the directory's domain logic."""
