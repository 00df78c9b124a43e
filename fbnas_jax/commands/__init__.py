"""Every `fbnas` subcommand, one module per area (see :mod:`fbnas_jax.cli`)."""
