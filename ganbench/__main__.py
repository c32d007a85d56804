"""`python -m ganbench` runs the command line, as the `ganbench` script does."""

from ganbench.cli import main

main()
