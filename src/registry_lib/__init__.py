"""Registry Lab: synthetic England, linkage, purpose-bound releases and registry statistics."""

__version__ = "0.1.0"
