"""Test-only helpers: writers of checkpoints in every layout users hold (`checkpoints`).

Nothing under `src/flux2_int8` imports this package (a test checks it); the built-in
tiny model the tests build on is a product part, `flux2_int8.tiny`.

May import: any floor of the package.
"""
