"""``python -m cnnumpy`` runs the command line."""

import sys

from cnnumpy.cli import main

sys.exit(main())
