"""What runs on build hosts during sync, build and pull: argv builders, scripts, probe."""
