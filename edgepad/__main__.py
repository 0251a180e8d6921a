"""`python -m edgepad` runs the edgepad command."""
from edgepad.cli import main

main()
