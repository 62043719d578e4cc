"""One module per command: the body the CLI dispatches to. See docs/architecture.md."""
