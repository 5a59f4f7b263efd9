"""One module per CLI command. Each exposes `register(subparsers)`, which adds its parser
and sets `run`; heavy imports happen inside `run`, so `flux2-int8 --help` stays instant.

May import: any floor of the package (it is the top); never `testing`.
"""
