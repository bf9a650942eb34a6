"""``python -m darkhalo`` runs the command line."""

from darkhalo.cli import main

main()
