"""``python -m blockd`` = ``shoal blockd`` (the guest test runs blockd from the source tree)."""

import sys

from blockd.main import main

sys.exit(main())
