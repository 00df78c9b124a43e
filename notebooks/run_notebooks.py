"""Execute the theory notebooks headless (python notebooks/run_notebooks.py [--inplace] [NOTEBOOK ...]).

Size comes from FBNAS_NB_SIZE (small|full); with --inplace the executed
notebook (outputs included) is written back, which is how the committed
full-size notebooks are produced:  FBNAS_NB_SIZE=full python notebooks/run_notebooks.py --inplace
"""
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    inplace = "--inplace" in args
    paths = [Path(a) for a in args if a != "--inplace"] or sorted(HERE.glob("0*.ipynb"))
    os.environ.setdefault("MPLBACKEND", "Agg")
    for p in paths:
        t = time.time()
        nb = nbformat.read(p, as_version=4)
        NotebookClient(nb, timeout=1800, kernel_name="python3",
                       resources={"metadata": {"path": str(HERE)}}).execute()
        if inplace:
            nbformat.write(nb, p)
        print(f"{p.name}: ok in {time.time() - t:.0f} s ({os.environ.get('FBNAS_NB_SIZE', 'small')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
