"""`python -m mullama`: the CLI, or (`python -m mullama worker [MODEL]`) the engine worker that
the Node binding starts."""

import sys


def _main() -> int:
    if sys.argv[1:2] == ["worker"]:
        from mullama.worker import main as worker_main

        return worker_main(sys.argv[2:])
    from mullama.cli import main as cli_main

    return cli_main()


sys.exit(_main())
