"""A process forked to run a command's main function (pollen_zygote.py, pollen_cli.py): its name and its end."""

import ctypes
import os
import sys
import traceback

PR_SET_NAME = 15


def name_as(command):
    """Names the process as the command in ps, top and /proc/<pid>/comm (its command line stays its parent's)."""
    ctypes.CDLL(None).prctl(PR_SET_NAME, command.encode()[:15], 0, 0, 0)


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
