"""fusekit: fuse public facial-expression datasets and web crawls into one clean, balanced training set."""

__version__ = "0.1.0"

__all__ = ["__version__"]
