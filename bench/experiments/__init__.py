"""The experiments: each turns a running system and a load into tidy tables."""
