"""Targets: the only code that talks to Docker or AWS.

`registry` maps an environment's target block to its runtime.
"""
