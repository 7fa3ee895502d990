import sys

from memotion_cli.main import main

sys.exit(main())
