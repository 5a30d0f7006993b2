import sys

from synthcohort.cli import main

sys.exit(main())
