"""`python -m flux ...` is the `flux` command."""

from flux._cli.main import main

main()
