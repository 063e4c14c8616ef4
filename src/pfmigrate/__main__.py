import sys

from pfmigrate.cli import main

sys.exit(main())
