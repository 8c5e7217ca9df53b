import sys

from fleetbench_payload.cli import main

if __name__ == "__main__":  # multiprocessing's spawn re-imports this module as __mp_main__
    sys.exit(main())
