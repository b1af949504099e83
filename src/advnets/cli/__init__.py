"""The entry points: advnets-train, -eval, -report, -compare, -classifier and ``python -m advnets.cli.publish``.

Nothing in the package imports from here: each module is a thin driver over the stages below it.
"""
