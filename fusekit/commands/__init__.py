"""CLI commands of the later stages, one module per stage, each decorating `fusekit.cli.app`.

They hold no pipeline logic either: parse flags, call the stage's library function, print its report.
"""
