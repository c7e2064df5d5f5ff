"""`python -m flaubert_np`: the `flaubert-np` command."""

import sys

from flaubert_np.cli import main

sys.exit(main())
