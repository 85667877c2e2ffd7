"""The subcommands that run a pipeline: `read`/`demo` (files, stdin) and `capture` (live).

May import everything in sensor/ but cli.py.
"""
