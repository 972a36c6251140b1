"""Shoal's shared kernel: configuration, logging, the daemon runner, timestamps and auth.

Components (``ring``, ``proxy``, ``objectd``, ``blockd``, ``tools``) may import from here;
nothing here imports a component.
"""

__version__ = "0.1.0"
