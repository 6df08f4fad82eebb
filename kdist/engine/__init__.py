"""Planning and the run engine (plan): placement, detection, scheduling, failover, journal."""
