"""`python -m flexitts.train MODEL ...`, the module form for `accelerate launch -m flexitts.train MODEL ...`."""
import sys

from flexitts.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main(["train", *sys.argv[1:]]))
