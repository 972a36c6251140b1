"""The modules here run inside the UML guest only (tests/block/test_guest.py boots it and runs
them there); on the host they are not collected at all."""

import os

collect_ignore_glob = [] if os.environ.get("SHOAL_IN_GUEST") == "1" else ["test_*.py"]
