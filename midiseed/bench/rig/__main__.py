"""`python -m midiseed.bench.rig jackd`."""

import sys

from midiseed.bench.rig import main

sys.exit(main())
