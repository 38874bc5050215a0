"""`python -m hearth`: the same as the `hearth` command."""

from hearth.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
