import sys

from mullama.cli import main

sys.exit(main())
