"""The end of a process forked to run a command's main function (pollen_zygote.py, pollen_cli.py)."""

import os
import sys
import traceback


def exit_with(main):
    """Runs `main` and ends the forked process with its exit code, as the command would; never returns.

    `os._exit`: the fork must not run its parent's clean-up (atexit handlers, buffered output of
    the parent's files) a second time.
    """
    code = 1
    try:
        main()
        code = 0
    except SystemExit as ended:
        code = ended.code if isinstance(ended.code, int) else (0 if ended.code is None else 1)
    except BaseException:  # pylint: disable=broad-exception-caught
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
