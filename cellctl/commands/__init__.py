"""CLI commands; each module has ``main(args) -> exit code``."""
