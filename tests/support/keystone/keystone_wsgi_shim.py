"""gunicorn entry point for Keystone in tests: clears sys.argv before Keystone loads.

Keystone's oslo.config parses ``sys.argv`` at import; under gunicorn that is gunicorn's own
command line, so every worker would die with "unrecognized arguments: --bind ..." while the master
keeps respawning them and accepting connections that never get an answer. Served as
``keystone_wsgi_shim:application`` with ``--pythonpath`` pointing at this directory; the config
comes from ``OS_KEYSTONE_CONFIG_DIR``. Runs in Keystone's own venv, never in Shoal's.
"""

import sys

sys.argv = sys.argv[:1]

from keystone.wsgi.api import application  # noqa: E402

__all__ = ["application"]
