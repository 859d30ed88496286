import sys

from cellctl.cli import main

sys.exit(main())
