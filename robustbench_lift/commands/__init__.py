"""CLI subcommands, one module each (see ``robustbench_lift.cli``)."""
