import sys

from wsss.native import main

sys.exit(main())
