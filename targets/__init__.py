"""Targets: the only code that talks to Docker or AWS. `registry` maps a target block to its runtime."""
