"""``python -m selfsup``: the command line (:func:`selfsup.cli.main`)."""

from selfsup.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
