"""``python -m serving.bench [bench options]`` — the same as ``python -m serving bench``."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
