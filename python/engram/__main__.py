"""``python -m engram ...``: the same command line as the ``engram`` binary."""

import signal
import sys


def main() -> int:
    """Run the CLI with this process's arguments; its exit status."""
    # As in the binary: Ctrl-C ends a command at once, except `train`/`resume`, which install
    # their own handler (checkpoint, then exit status 75).
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    from engram import _engram

    return _engram.cli_main(["python -m engram", *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
