"""``python -m diffusion_edu`` is the ``diffusion-edu`` command."""
import sys

from .course.cli import main

sys.exit(main())
