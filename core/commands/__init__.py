"""One module per `python -m core` command; each defines `register(subparsers)`."""
