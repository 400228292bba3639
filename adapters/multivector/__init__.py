"""Package placeholder; filled by its adapter."""
