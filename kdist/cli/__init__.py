"""The command line and its output (report): parsing, commands, JSON documents, display."""
