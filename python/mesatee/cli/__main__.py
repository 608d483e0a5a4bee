"""``python -m mesatee.cli``: the ``mesatee`` command without its console script."""

from mesatee.cli import main

main()
