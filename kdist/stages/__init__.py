"""One module per stage of a slice's run: sync, build, pull (collect), tests, publish."""
