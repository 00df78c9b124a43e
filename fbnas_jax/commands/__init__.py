"""Command-line subcommands of the core library (see :mod:`fbnas_jax.cli`)."""
