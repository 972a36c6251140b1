#!/bin/bash
# guest-pytest.sh [PYTEST ARGS...] -- runs INSIDE the guest: pytest on the project tree that
# run-in-guest.sh shares read-only at /mnt/src (SRC_DIR on the host). The JUnit XML, if asked for
# with --junitxml=/mnt/host/junit.xml, lands in the run's share directory on the host.
cd /mnt/src || { echo "no /mnt/src (set SRC_DIR on the host)"; exit 2; }
export PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=/mnt/src SHOAL_IN_GUEST=1
exec python3 -m pytest -p no:cacheprovider "$@"
