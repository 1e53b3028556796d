"""Accelerator targets that CoSA's schedules are lowered onto (`gemmini`)."""
