"""``python -m surgsim``: the same command as ``surgsim``."""

from surgsim.cli import main

main()
