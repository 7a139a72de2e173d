"""``python -m fastso3 ...`` (and ``torchrun -m fastso3 train ...``): the ``fastso3`` command line."""

import sys

from .cli import main

sys.exit(main())
