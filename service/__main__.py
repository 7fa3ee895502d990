"""``python -m service serve ...``: the gateway's subcommands (what GatewayProcess starts)."""

import sys

from service.cli import main

sys.exit(main())
