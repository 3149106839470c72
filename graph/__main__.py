"""`python -m graph` serves; `python -m graph schema` prints the schema."""

import sys

from graph.cli import main

if __name__ == "__main__":
    main(sys.argv[1:] or ["serve"])
