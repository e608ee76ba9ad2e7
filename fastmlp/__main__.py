import sys

from fastmlp.cli import main

sys.exit(main())
