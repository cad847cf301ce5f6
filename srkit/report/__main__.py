"""``python -m srkit.report RUN_DIR``: the same as ``srkit-report RUN_DIR``."""
import sys

from srkit.cli.report import main

sys.exit(main())
