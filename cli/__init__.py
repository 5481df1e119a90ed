"""The `flux` command line: a thin typer + rich layer over `flux.runner`."""
