"""``python -m ad_buyer_storage.cli``."""

import sys

from ad_buyer_storage.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
