"""`fusekit faces` commands (see fusekit/cli.py for the conventions). Placeholder until the stage lands."""
