"""``python -m serving.engine [serve options]`` — the same as ``python -m serving serve``."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
