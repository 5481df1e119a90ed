"""`python -m flux ...` is the `flux` command."""

from flux._cli import main

main()
