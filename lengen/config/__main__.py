import sys

from lengen.config.cli import main

sys.exit(main())
