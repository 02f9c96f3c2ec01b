"""``python -m jaxzip``: the same as the ``jaxzip`` command."""

import sys

from jaxzip.cli import main

if __name__ == "__main__":
    sys.exit(main())
