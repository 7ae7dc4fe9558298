"""TopFormer Studio: `python main.py` opens the app; `python main.py COMMAND ...` runs a headless command."""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from engine.cli import COMMANDS, run_command, unknown_command

    if argv and argv[0] in COMMANDS:
        return run_command(argv)
    if argv and not argv[0].startswith("-"):  # the app takes options only: a bare word is a command
        return unknown_command(argv[0])
    if argv and argv[0] in ("-h", "--help"):
        print("usage: main.py [--source 0|PATH] [--model NAME] [--models-dir DIR] [--scale full|half|best] [--fast]")
        print("               [--theme dark|light] [--benchmark-frames N [--benchmark-seconds S] [--health-every S]]")
        print("               [--screenshot PNG [--screenshot-after S]] [--profile pi|desktop] [--kiosk [--fallback VIDEO]]")
        print("               [--compare MODEL:SCALE,MODEL:SCALE[,...]]   (2 to 4 panes on the same frames)")
        print("       main.py COMMAND [...]   (COMMAND --help for details)\n\ncommands:")
        for name, (_, text) in COMMANDS.items():
            print(f"  {name:<10} {text}")
        print("\nWith no command the desktop app starts.")
        return 0
    from app.launch import launch  # Qt is imported only for the GUI

    return launch(argv)


if __name__ == "__main__":
    sys.exit(main())
